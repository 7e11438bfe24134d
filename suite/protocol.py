"""The fair-comparison protocol of a definition: its [tuning] table (every arm tuned under the same
declared budget, on pilot seeds it never reports), its [sweeps] (one knob of one arm over declared
values) and the named variants both expand to (`vcycle@alpha=0.5`, `baseline@budget=0.7`).
Imports no torch: the judge reads it.

The tuning protocol (issue 23; in the spirit of AlgoPerf's external tuning, Dahl et al. 2023, and
"No Train No Gain", Kaddour et al., NeurIPS 2023: a method's gain must survive a baseline tuned as
well as it is):
- every tuned arm gets the same number of trials (`trials`): the whole grid of its space when the
  grid has exactly that many points, else a Latin hypercube of that many points over the grid
  (`trial_points`: deterministic, no seed to pick);
- each trial trains on every pilot seed (at least 2, disjoint from the seeds the scale reports);
- the selection rule, one for every arm (RULE);
- the edge rule (EDGE_RULE): a chosen value on the edge of its list is tried once more one step
  beyond it, and the report says so;
- an ablation arm inherits its parent's chosen values (`inherit = "vcycle"`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from suite.spec import BASELINE, Arm, Benchmark, Optim, Scale, SpecError, check_arm_train

RULE = ("lowest mean final held-out loss over the pilot seeds, every arm at its own full plan "
        "(the baseline's FLOP budget); a trial with any pilot run not completed (diverged, "
        "preempted), with a non-finite final loss, or with a final loss not below that run's start "
        "held-out loss (it did not train) ranks last and is never chosen; an arm none of whose "
        "trials qualifies gets no choice (tune refuses); ties (equal to 1e-9 nats) go to the "
        "trial listed first")
EDGE_RULE = ("when the chosen value of a knob is the first or last of its list, one more trial "
             "moves that knob one step beyond the edge (lr and weight_decay: by the ratio of "
             "the last two values; other knobs: by their difference), once; a step outside "
             "what the method allows is not taken, and a list that is not numeric or has one "
             "value has no step beyond; the table says which happened")
UNTUNABLE = {"budget": "is what a saving is measured in, never tuned (a trial with less "
             "compute is another comparison: the matched-budget check)",
             "note": "is a description, not a knob"}
LOG_KEYS = ("lr", "weight_decay")  # stepped by ratio at the edge: they are searched on a log grid
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(Optim))
SEP = "@"
# what an arm runs when it does not set a COMMON option (suite/methods/base.py): the whole budget
DEFAULTS: dict[str, Any] = {"budget": 1.0}
NO_STEP = ("note",)  # options that change no step of training: a description, in the manifest
UNKNOWN = object()  # own_value's answer where the value an arm runs cannot be said


@dataclass(frozen=True)
class Tuning:
    """A definition's [tuning] table. `spaces`: arm -> knob -> the values tried; `inherit`:
    ablation arm -> the tuned arm whose chosen values it takes."""

    scales: tuple[str, ...]
    trials: int
    pilot_seeds: tuple[int, ...]
    spaces: dict[str, dict[str, tuple]]
    inherit: dict[str, str] = field(default_factory=dict)

    def trials_of(self, arm: str) -> list[dict[str, Any]]:
        """The trials of a tuned arm: `trials` points of its space (see `trial_points`)."""
        return trial_points(self.spaces[arm], self.trials)


@dataclass(frozen=True)
class Sweep:
    """[sweeps.<name>]: `key` of arm `arm` over `values`, at `scales`, on `seeds` seeds (0: the
    scale's), each value one named variant arm."""

    name: str
    arm: str
    key: str
    values: tuple
    seeds: int = 0
    scales: tuple[str, ...] = ()


# ------------------------------------------------------------------ variants


def fmt_value(v: Any) -> str:
    """A value as it appears in a variant's name: floats by repr (round-trips), bools lower."""
    if isinstance(v, bool):
        return str(v).lower()
    return repr(v) if isinstance(v, float) else str(v)


def parse_value(text: str) -> Any:
    """The inverse of fmt_value: an integer, a number, true/false, else the text itself."""
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def variant_name(arm: str, values: dict[str, Any]) -> str:
    """`arm@k=v,k=v`: the name of `arm` run with `values` (a trial, a sweep point)."""
    return arm + SEP + ",".join(f"{k}={fmt_value(v)}" for k, v in values.items()) \
        if values else arm


def split_name(name: str) -> tuple[str, dict[str, Any]]:
    """`vcycle@alpha=0.5,lr=0.002` -> ("vcycle", {"alpha": 0.5, "lr": 0.002}). Raises ValueError
    naming the part that is not `key=value`."""
    parent, sep, rest = name.partition(SEP)
    if not sep:
        return name, {}
    values: dict[str, Any] = {}
    for part in rest.split(","):
        key, eq, text = part.partition("=")
        if not eq or not key.strip() or not text.strip():
            raise ValueError(f"{part!r} is not key=value")
        if key.strip() in values:
            raise ValueError(f"{key.strip()!r} is given twice")
        values[key.strip()] = parse_value(text.strip())
    return parent.strip(), values


def canonical(name: str) -> str:
    """A variant's name as the suite writes it (`vcycle@alpha=0.5`, whatever the spacing or
    the spelling of its numbers): one arm, one folder. Raises ValueError as split_name."""
    parent, values = split_name(name)
    return variant_name(parent, values)


def with_values(arm: Arm, values: dict[str, Any], name: str, file: str = "(command line)") -> Arm:
    """`arm` with `values` over its own: [train] keys go to its train table (checked as the
    definition's are), any other key is a method option (its method checks it when it plans).
    Raises SpecError naming `arms.<name>.<key>`."""
    train = {k: v for k, v in values.items() if k in TRAIN_KEYS}
    opts = {k: v for k, v in values.items() if k not in TRAIN_KEYS}
    train = check_arm_train(train, file, f"arms.{name}") if train else {}
    return Arm(name, arm.method, {**arm.options, **opts}, {**arm.train, **train})


def resolve_arm(bench: Benchmark, name: str, where: str = "") -> Arm:
    """A declared arm, or a variant of one (`vcycle@alpha=0.5`). Raises SpecError naming the
    definition's arms for an unknown one; `where`: what the name came from (default the
    definition file; '(command line)' for --arms)."""
    where = where or bench.path
    if name in bench.arms:
        return bench.arms[name]
    try:
        parent, values = split_name(name)
    except ValueError as e:
        raise SpecError(where, f"arms.{name}", str(e), "an arm, or arm@key=value,key=value")\
            from None
    if parent not in bench.arms or not values:
        raise SpecError(where, f"arms.{name}", "no such arm",
                        ", ".join(bench.arms) + ", or a variant arm@key=value,key=value")
    return with_values(bench.arms[parent], values, name, where)


def with_arms(bench: Benchmark, names: list[str], where: str = "") -> Benchmark:
    """`bench` with the variants among `names` added to its arms (the runner looks arms up);
    `where` as resolve_arm's."""
    extra = {n: resolve_arm(bench, n, where) for n in names if n not in bench.arms}
    return dataclasses.replace(bench, arms={**bench.arms, **extra}) if extra else bench


def parent_of(name: str) -> str:
    return name.partition(SEP)[0]


def is_variant(name: str) -> bool:
    return SEP in name


def own_value(arm: Arm, key: str, scale: Scale | None = None) -> Any:
    """The value of `key` that `arm` trains with: its [train] value (else, given `scale`, the
    scale's), its option, else what its method runs without it (DEFAULTS; a method's own
    option default, read from suite.methods only then: it imports torch). UNKNOWN where that
    cannot be said (a [train] key without a scale, a key its method lacks)."""
    if key in TRAIN_KEYS:
        return arm.train.get(key, getattr(scale.train, key) if scale else UNKNOWN)
    if key in arm.options:
        return arm.options[key]
    if key in DEFAULTS:
        return DEFAULTS[key]
    from suite import methods

    try:
        option = methods.get(arm.method).options.get(key)
    except methods.MethodError:
        return UNKNOWN
    return UNKNOWN if option is None or option.default is None else option.default


def runs_as(bench: Benchmark, name: str, scale: Scale | None = None) -> str:
    """The arm a name trains as: a variant whose every value is what its parent already runs
    (its options, tuned or declared; its [train] values, the scale's under them; its method's
    defaults such as budget=1.0; `note`, which changes no step) is its parent itself, one run
    in one folder; any other name is itself. The one rule of --arms and [sweeps]."""
    parent, values = split_name(name)
    arm = bench.arms.get(parent)
    if not values or arm is None:
        return name
    same = all(k in NO_STEP or own_value(arm, k, scale) == v
               for k, v in values.items())
    return parent if same else name


def sweep_arms(bench: Benchmark, sweep: Sweep, scale: str = "") -> list[tuple[Any, str]]:
    """(value, arm name) per value of a sweep: the parent arm itself where it already runs with
    that value (`runs_as`: its own, its method's default, or at `scale` the definition's
    [train] value), else the variant `arm@key=value` (no run twice)."""
    at = bench.scale(scale) if scale else None
    return [(v, runs_as(bench, variant_name(sweep.arm, {sweep.key: v}), at))
            for v in sweep.values]


# ------------------------------------------------------------------ trials


def _radical_inverse(i: int, base: int) -> float:
    out, f = 0.0, 1.0 / base
    while i:
        i, digit = divmod(i, base)
        out += digit * f
        f /= base
    return out


PRIMES = (2, 3, 5, 7, 11, 13, 17, 19)


def trial_points(space: dict[str, tuple], n: int) -> list[dict[str, Any]]:
    """`n` distinct points of the grid `space` (knob -> values). The whole grid, in product
    order, when it has exactly n points. Else a Latin hypercube with no seed: trial i takes the
    first knob's value at (i + 1/2) / n of its list (in list order), and each other knob d its
    value at (r_d(i) + 1/2) / n, r_d(i) the rank of i + 1 in the van der Corput sequence of base
    PRIMES[d - 1]; so every knob's values are spread evenly over the trials (with as many trials
    as lr values, every arm tries every lr). A point drawn twice is replaced by the next unused
    cell of the Halton sequence. Raises ValueError when the grid has fewer than n points or
    more knobs than PRIMES + 1."""
    keys = list(space)
    size = math.prod(len(space[k]) for k in keys)
    if size < n:
        raise ValueError(f"a grid of {size} point(s) cannot hold {n} distinct trials")
    if len(keys) > len(PRIMES) + 1:
        raise ValueError(f"at most {len(PRIMES) + 1} knobs per arm")
    if size == n:
        return [dict(zip(keys, p, strict=True)) for p in itertools.product(*space.values())]
    ranks = [list(range(n))]
    for d in range(1, len(keys)):
        order = sorted(range(n), key=lambda i, b=PRIMES[d - 1]: _radical_inverse(i + 1, b))
        ranks.append([order.index(i) for i in range(n)])
    cells: list[tuple[int, ...]] = []
    for i in range(n):
        cell = tuple(int((ranks[d][i] + 0.5) / n * len(space[k])) for d, k in enumerate(keys))
        cells.append(cell if cell not in cells else ())
    j = 0
    for i, cell in enumerate(cells):
        while not cell:  # a repeat: the next Halton cell nobody has
            j += 1
            cand = tuple(min(len(space[k]) - 1, int(_radical_inverse(j, PRIMES[d % len(PRIMES)])
                                                   * len(space[k])))
                         for d, k in enumerate(keys))
            cell = cand if cand not in cells else ()
        cells[i] = cell
    return [{k: space[k][c] for k, c in zip(keys, cell, strict=True)} for cell in cells]


def edges(space: dict[str, tuple], chosen: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """EDGE_RULE for each knob of `chosen` on the first or last of its list, in space order:
    (knob, the value one step beyond, "") on a numeric list of at least 2 values (sorted), or
    (knob, None, why no step beyond exists) on a list that cannot be extended (not numeric: a
    category has no next value; or one value), whose edge is its first or last in list order."""
    out: list[tuple[str, Any, str]] = []
    for key, values in space.items():
        nums = sorted(v for v in values if isinstance(v, (int, float)) and
                      not isinstance(v, bool))
        if len(nums) < 2 or len(nums) != len(values):
            if chosen[key] in (values[0], values[-1]):
                out.append((key, None, "its list has one value" if len(values) < 2 else
                            "its list is not numeric"))
            continue
        if chosen[key] not in (nums[0], nums[-1]):
            continue
        edge, near = (nums[0], nums[1]) if chosen[key] == nums[0] else (nums[-1], nums[-2])
        if key in LOG_KEYS and edge > 0 and near > 0:
            beyond = edge * (edge / near)
        else:
            beyond = edge + (edge - near)
        beyond = float(f"{beyond:.6g}") if isinstance(beyond, float) else beyond
        out.append((key, beyond, ""))
    return out


def edge_steps(space: dict[str, tuple], chosen: dict[str, Any]) -> list[tuple[str, Any]]:
    """(knob, value one step beyond the edge) for each knob of `chosen` on the first or last of
    its (sorted) numeric list of at least 2 values: EDGE_RULE (`edges` without the knobs whose
    list cannot be extended)."""
    return [(k, b) for k, b, _ in edges(space, chosen) if b is not None]


# ------------------------------------------------------------------ parsing


def _seeds(v: Any, file: str, key: str) -> tuple[int, ...]:
    ok = isinstance(v, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                     for s in v)
    if not ok or len(set(v)) < 2 or len(set(v)) != len(v):
        what = "at least 2 distinct seeds" if ok else "a list of integers >= 0"
        raise SpecError(file, key, f"must be {what}, got {v!r}",
                        "a list of integers >= 0, e.g. [1000, 1001]")
    return tuple(v)


def _values(v: Any, file: str, key: str) -> tuple:
    if not isinstance(v, list) or not v or not all(
            isinstance(x, (int, float, str)) and not (isinstance(x, float) and
                                                      not math.isfinite(x)) for x in v) \
            or len(set(v)) != len(v):
        raise SpecError(file, key, f"must be a non-empty list of distinct values, got {v!r}",
                        "finite numbers or strings, e.g. [5e-4, 1e-3, 2e-3]")
    return tuple(v)


def _scales(v: Any, bench_scales: dict, file: str, key: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise SpecError(file, key, f"must be a list of scales, got {v!r}",
                        f"e.g. [{', '.join(repr(s) for s in bench_scales)}]")
    if bad := [s for s in v if s not in bench_scales]:
        raise SpecError(file, key, f"unknown scale(s) {bad}", ", ".join(bench_scales))
    return tuple(v)


def parse_tuning(doc: Any, file: str, arms: dict[str, Arm], scales: dict) -> Tuning:
    """A [tuning] table, checked: every arm has a space or inherits from an arm that has one;
    each space holds `trials` distinct points; the pilot seeds are disjoint from the seeds each
    tuned scale reports (0 .. seeds-1). Raises SpecError naming `tuning.<key>`."""
    if not isinstance(doc, dict):
        raise SpecError(file, "tuning", "must be a table")
    allowed = ("scales", "trials", "pilot_seeds", "arms")
    for key in doc:
        if key not in allowed:
            raise SpecError(file, f"tuning.{key}", "unknown key", ", ".join(allowed))
    for key in allowed:
        if key not in doc:
            raise SpecError(file, f"tuning.{key}", "missing", {
                "scales": "the scales tuned, e.g. ['tiny']", "trials": "trials per arm",
                "pilot_seeds": "e.g. [1000, 1001]", "arms": "one table per arm"}[key])
    tuned = _scales(doc["scales"], scales, file, "tuning.scales")
    trials = doc["trials"]
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise SpecError(file, "tuning.trials", f"must be a positive integer, got {trials!r}",
                        "the number of trials every arm gets")
    pilots = _seeds(doc["pilot_seeds"], file, "tuning.pilot_seeds")
    for s in tuned:
        if clash := sorted(p for p in pilots if p < scales[s].seeds):
            raise SpecError(file, "tuning.pilot_seeds", f"{clash} are reported seeds at "
                            f"scale {s} (0..{scales[s].seeds - 1}): a choice must not be "
                            "measured on the runs it picked", f"seeds >= {scales[s].seeds}")
    table = doc["arms"]
    if not isinstance(table, dict):
        raise SpecError(file, "tuning.arms", "must be a table of arms")
    spaces, inherit = {}, {}
    for name, space in table.items():
        where = f"tuning.arms.{name}"
        if name not in arms:
            raise SpecError(file, where, "no such arm", ", ".join(arms))
        if not isinstance(space, dict) or not space:
            raise SpecError(file, where, "must be a table: knob = [values], or inherit = ARM")
        if "inherit" in space:
            if len(space) > 1:
                raise SpecError(file, where, "an arm that inherits declares nothing else")
            inherit[name] = space["inherit"]
            continue
        for k in space:
            if k in UNTUNABLE:
                raise SpecError(file, f"{where}.{k}", UNTUNABLE[k],
                                "the arm's lr and its method's knobs")
        spaces[name] = {k: _values(v, file, f"{where}.{k}") for k, v in space.items()}
        try:
            trial_points(spaces[name], trials)
        except ValueError as e:
            raise SpecError(file, where, str(e), "more values, or fewer tuning.trials") from None
    for name, parent in inherit.items():
        if parent not in spaces:
            raise SpecError(file, f"tuning.arms.{name}.inherit", f"{parent!r} is not a tuned "
                            "arm", ", ".join(spaces))
        if arms[parent].method != arms[name].method:  # its knobs would not be its method's
            raise SpecError(file, f"tuning.arms.{name}.inherit", f"{parent!r} trains method "
                            f"{arms[parent].method!r}, {name!r} trains {arms[name].method!r}",
                            ", ".join(a for a in spaces if arms[a].method == arms[name].method)
                            or "none: a tuned arm of the same method")
    if missing := [a for a in arms if a not in table]:
        raise SpecError(file, f"tuning.arms.{missing[0]}", "missing: every arm is tuned under "
                        "the same budget, or inherits its parent's values",
                        "knob = [values], or inherit = ARM")
    return Tuning(tuned, trials, pilots, spaces, inherit)


def parse_sweeps(doc: Any, file: str, arms: dict[str, Arm], scales: dict) -> dict[str, Sweep]:
    """[sweeps.<name>] tables: `arm` (not the baseline: its budget variants are the matched-
    budget controls), exactly one swept knob (a list), optional `seeds` and `scales`. Raises
    SpecError naming `sweeps.<name>.<key>`."""
    if not isinstance(doc, dict):
        raise SpecError(file, "sweeps", "must be a table of sweeps")
    out = {}
    for name, t in doc.items():
        where = f"sweeps.{name}"
        if not isinstance(t, dict) or t.get("arm") not in arms:
            raise SpecError(file, f"{where}.arm", f"missing or no such arm: "
                            f"{t.get('arm') if isinstance(t, dict) else t!r}", ", ".join(arms))
        if t["arm"] == BASELINE:
            raise SpecError(file, f"{where}.arm", "the baseline is not swept: its budget "
                            "variants (baseline@budget=f) are the matched-budget controls, made "
                            "by run --matched; any other variant runs by name (--arms)",
                            ", ".join(a for a in arms if a != BASELINE) or "none: declare an arm")
        knobs = [k for k in t if k not in ("arm", "seeds", "scales")]
        if len(knobs) != 1:
            raise SpecError(file, where, f"sweeps exactly one knob, got {knobs or 'none'}",
                            "arm = ARM, KNOB = [values], seeds = N, scales = [...]")
        seeds = t.get("seeds", 0)
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 0:
            raise SpecError(file, f"{where}.seeds", f"must be an integer >= 0, got {seeds!r}",
                            "seeds per value (0: the scale's)")
        out[name] = Sweep(name, t["arm"], knobs[0], _values(t[knobs[0]], file,
                                                             f"{where}.{knobs[0]}"), seeds,
                          _scales(t.get("scales", list(scales)), scales, file,
                                  f"{where}.scales"))
    return out


__all__ = ["BASELINE", "DEFAULTS", "EDGE_RULE", "NO_STEP", "RULE", "Sweep", "Tuning", "UNKNOWN",
           "canonical", "edge_steps", "edges", "fmt_value", "is_variant", "own_value",
           "parent_of", "parse_sweeps", "parse_tuning", "parse_value", "resolve_arm", "runs_as",
           "split_name", "sweep_arms", "trial_points", "variant_name", "with_arms",
           "with_values"]
