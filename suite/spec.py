"""Benchmark definitions: TOML -> typed, validated objects; the criteria and the baseline's
name every wing shares. Imports no torch (the judge reads it).

A definition declares a workload (family, data, optimiser, evaluation), one table per scale
(model size, steps, batch) and its arms. Top-level [data], [train] and [eval] are defaults that a
scale may override key by key (`[scales.tiny.train] lr = ...`). Every problem is reported as
`<file>: <key>: <what is wrong>; allowed: <what is>` before anything trains.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.errors import SuiteError

SCALES = ("smoke", "tiny", "small", "paper")
BASELINE = "baseline"  # the arm every other arm of a benchmark is compared with
# What a saving can be judged on: curve field -> its name in tables and claims. Every arm is
# judged on the held-out loss; a method adds others (paper 2: the training loss, its criterion).
CRITERIA = {"heldout_loss": "held-out loss", "train_loss": "training loss"}


def baseline_first(arm: str) -> tuple[bool, str]:
    """Sort key of arm names: the baseline, then the other arms by name."""
    return arm != BASELINE, arm


class SpecError(SuiteError, ValueError):
    """A definition that cannot run. The message names the file, the key and what is allowed."""

    def __init__(self, file: str | Path, key: str, problem: str, allowed: str = "") -> None:
        self.file, self.key, self.problem, self.allowed = str(file), key, problem, allowed
        msg = f"{file}: {key}: {problem}"
        super().__init__(msg + (f"; allowed: {allowed}" if allowed else ""))


def _opt(default: Any, doc: str, *, choices: tuple = (), low: float | None = None,
         high: float | None = None, low_open: bool = False) -> Any:
    meta = {"doc": doc, "choices": choices, "low": low, "high": high, "low_open": low_open}
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


REQUIRED = dataclasses.MISSING


@dataclass(frozen=True)
class DataSpec:
    source: str = _opt(REQUIRED, "shakespeare, offline-en, fashion-mnist, mnist-5k, a path, "
                            "or 'user'")
    tokenizer: str = _opt("bytes", "how text becomes ids", choices=("bytes",))
    vocab_size: int = _opt(0, "vocabulary of pre-tokenised shards (0: the tokenizer's, from "
                           "tokens.json, else the largest id + 1)", low=0)
    image_size: int = _opt(0, "side, in pixels, a folder of images is resized to (0: the first "
                           "image's)", low=0)
    augment: str = _opt("none", "training transforms of a folder of images (timm's factory): "
                        "none, or deit (RandAugment, colour jitter, random erasing)",
                        choices=("none", "deit"))


@dataclass(frozen=True)
class Optim:
    """The optimiser and learning-rate schedule: a definition's [train] table, and what the
    training loop (suite/run/train.py) runs each stage of a plan with; a method derives its
    stages' values from it (`dataclasses.replace`). The one home of these fields."""

    lr: float = _opt(REQUIRED, "peak learning rate", low=0.0, low_open=True)
    optimizer: str = _opt("adamw", "optimiser", choices=("adamw", "sgd"))
    weight_decay: float = _opt(0.0, "decoupled weight decay (AdamW) or L2 (SGD)", low=0.0)
    betas: tuple = _opt((0.9, 0.999), "AdamW betas, two numbers in [0, 1)")
    momentum: float = _opt(0.0, "SGD momentum", low=0.0, high=1.0)
    warmup: float = _opt(0.0, "fraction of steps spent in linear warm-up", low=0.0, high=0.5)
    decay: str = _opt("cosine", "shape after warm-up", choices=("cosine", "linear", "constant"))
    min_lr_ratio: float = _opt(0.0, "final lr as a fraction of the peak", low=0.0, high=1.0)
    grad_clip: float = _opt(0.0, "global gradient-norm clip (0: off)", low=0.0)


def lr_factor(step: int, total: int, o: Optim) -> float:
    """Multiplier of the peak lr at `step` (0-based) of a stage of `total` steps: linear
    warm-up over `o.warmup` x total steps, then `o.decay` (cosine, linear or constant) down to
    `o.min_lr_ratio` x the peak. The training loop and the methods' plans share it."""
    warm = int(round(o.warmup * total))
    if step < warm:
        return (step + 1) / warm
    if o.decay == "constant" or total <= warm:
        return 1.0
    frac = (step - warm) / max(1, total - warm)
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if o.decay == "cosine" else 1 - frac
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * shape


@dataclass(frozen=True)
class EvalSpec:
    every: int = _opt(50, "held-out evaluation every N steps", low=1)
    batches: int = _opt(4, "held-out batches per evaluation", low=1)
    metrics: tuple = _opt(("loss",), "what each evaluation reports")


@dataclass(frozen=True)
class GateSpec:
    """The decision rules of this benchmark, written before any run (report and gate)."""

    tolerance: float = _opt(0.05, "how far (absolute fraction) a saving may fall below the "
                            "committed one, or below a claim, before it counts", low=0.0)
    budget_tolerance: float = _opt(0.05, "the held-out loss at the baseline's budget may rise "
                                   "by what this fraction of the budget is worth at its end "
                                   "on the reference baseline's mean curve (nats)",
                                   low=0.0, high=0.5)
    min_seeds: int = _opt(3, "fewer completed seeds per arm: inconclusive", low=1)
    max_interval: float = _opt(0.10, "a 95% interval of a saving that holds 0 and is wider "
                               "than this: inconclusive; narrower: no saving shown",
                               low=0.0, low_open=True)
    claims_at: tuple = _opt(("paper",), "scales at which the papers' claims are held")
    matched_budgets: tuple = _opt((0.5, 0.6, 0.7, 0.8, 0.9), "budget fractions a matched "
                                  "baseline may be given: an arm that saves is checked against "
                                  "the baseline trained to the smallest of them at or above the "
                                  "arm's cost C / B (suite/judge/analysis.py, 'Matched budget')")
    unresolved_at: tuple = _opt((), "scales at which the declared seeds cannot resolve a "
                                "saving to +-5 pt (the power analysis): the report says so "
                                "beside every verdict there, and the gate's error rates "
                                "(results/<scale>/SIMULATION.md) are not promised there")


@dataclass(frozen=True)
class CheckpointSpec:
    """When a run writes its state (suite/run/state.py). Not part of a run's resolved definition:
    a resumed run's curve is the uninterrupted one's, so the policy cannot change a result."""

    every_steps: int = _opt(0, "write the run state every N training steps (0: by wall time)",
                            low=0)
    every_minutes: float = _opt(30.0, "with every_steps = 0: every M minutes of wall time "
                                "(0: only when preempted)", low=0.0)
    keep: int = _opt(2, "checkpoints kept per run (older ones are deleted)", low=1)


@dataclass(frozen=True)
class Scale:
    """Everything one run of one arm needs, with the benchmark's defaults already applied."""

    name: str
    model: dict[str, int]
    steps: int
    batch_size: int
    seq_len: int  # text only; 0 for images
    data: DataSpec
    train: Optim
    eval: EvalSpec
    # seeds per arm that `run` trains by default: at tiny, from `python -m suite power`
    seeds: int = 1
    # "eval.every" -> "scales.tiny.eval.every" where the scale overrides it, for error messages
    origin: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def where(self, key: str) -> str:
        return self.origin.get(key, key)


@dataclass(frozen=True)
class Arm:
    name: str
    method: str
    options: dict[str, Any]
    # [arms.<name>.train]: this arm's own values of the definition's [train] keys (an arm tuned
    # on its own lr, say), over the scale's; `Arm.optim` resolves them
    train: dict[str, Any] = field(default_factory=dict)

    def optim(self, scale: Scale) -> Optim:
        """The scale's [train] table with this arm's overrides: what the arm trains with."""
        return dataclasses.replace(scale.train, **self.train) if self.train else scale.train


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: str
    description: str
    family: str
    scales: dict[str, Scale]
    arms: dict[str, Arm]
    gate: GateSpec = field(default_factory=GateSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    # [tuning] and [sweeps] (suite/protocol.py): how every arm is tuned alike, and which knobs
    # are swept; None / {} for a definition without them
    tuning: Any = None
    sweeps: dict[str, Any] = field(default_factory=dict)

    def scale(self, name: str) -> Scale:
        if name not in self.scales:
            raise SpecError(self.path, f"scales.{name}", "this benchmark does not declare it",
                            ", ".join(self.scales))
        return self.scales[name]

    def resolved(self, scale: str, arm: str) -> dict[str, Any]:
        """The resolved definition of one run, for its manifest."""
        return {"benchmark": self.name, "file": self.path, "family": self.family,
                "scale": dataclasses.asdict(self.scale(scale)),
                "arm": dataclasses.asdict(self.arms[arm])}


METRICS = ("loss", "top1")
_TOP = {"name", "description", "family", "data", "train", "eval", "scales", "arms", "gate",
        "checkpoint", "tuning", "sweeps"}
_SCALE_KEYS = {"model", "steps", "batch_size", "seq_len", "seeds", "data", "train", "eval"}


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is float:  # TOML and variant names spell nan and inf: no setting is either
        return isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is tuple:
        return isinstance(value, (list, tuple))
    return True


def _type_name(hint: Any) -> str:
    return {float: "a finite number", int: "an integer", str: "a string",
            tuple: "a list"}.get(hint, "?")


def _parse(cls: type, table: dict, file: str, where: dict[str, str]) -> Any:
    """Build dataclass `cls` from a TOML table, checking keys, types, choices and ranges.
    `where` maps each key to the table it came from ("" for a key that is missing)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)

    def at(k: str) -> str:
        return f"{where.get(k, where[''])}.{k}"

    for key in table:
        if key not in fields:
            raise SpecError(file, at(key), "unknown key", ", ".join(fields))
    out = {}
    for name, f in fields.items():
        key, meta = at(name), f.metadata
        if name not in table:
            if f.default is REQUIRED and f.default_factory is REQUIRED:  # type: ignore[misc]
                raise SpecError(file, key, f"missing ({meta['doc']})")
            continue
        v = table[name]
        if not _type_ok(v, hints[name]):
            raise SpecError(file, key, f"must be {_type_name(hints[name])}, got {v!r}",
                            meta["doc"])
        if meta["choices"] and v not in meta["choices"]:
            raise SpecError(file, key, f"unknown value {v!r}", ", ".join(meta["choices"]))
        lo, hi = meta["low"], meta["high"]
        if lo is not None and (v < lo or (meta["low_open"] and v == lo)):
            op = ">" if meta["low_open"] else ">="
            raise SpecError(file, key, f"must be {op} {lo}, got {v!r}", meta["doc"])
        if hi is not None and v > hi:
            raise SpecError(file, key, f"must be <= {hi}, got {v!r}", meta["doc"])
        out[name] = tuple(v) if hints[name] is tuple else v
    obj = cls(**out)
    if isinstance(obj, Optim):
        b = obj.betas
        if len(b) != 2 or not all(isinstance(x, (int, float)) and 0 <= x < 1 for x in b):
            raise SpecError(file, at("betas"), f"must be two numbers in [0, 1), got {list(b)}")
    if isinstance(obj, EvalSpec):
        bad = [m for m in obj.metrics if m not in METRICS]
        if bad or not obj.metrics:
            raise SpecError(file, at("metrics"), f"unknown metric(s) {bad}", ", ".join(METRICS))
    return obj


def check_arm_train(table: Any, file: str, where: str) -> dict[str, Any]:
    """An arm's [train] overrides, each key checked as the definition's [train] checks it (an
    arm's table need not repeat the required lr). Raises SpecError naming `where.<key>`."""
    if not isinstance(table, dict):
        raise SpecError(file, where, "must be a table of [train] keys",
                        ", ".join(f.name for f in dataclasses.fields(Optim)))
    parsed = _parse(Optim, {"lr": 1.0, **table}, file, {"": where})
    return {k: getattr(parsed, k) for k in table}


def _positive_int(v: Any, file: str, key: str, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise SpecError(file, key, f"must be a positive integer, got {v!r}", what)
    return v


def _section(cls: type, doc: dict, st: dict, section: str, file: str, where: str) -> Any:
    """Top-level [section] overridden key by key by [scales.X.section]; errors name the origin."""
    base, over = doc.get(section, {}), st.get(section, {})
    if not isinstance(over, dict):
        raise SpecError(file, f"{where}.{section}", f"must be a table, got {type(over).__name__}")
    origin = {"": section} | {k: section for k in base} | {k: f"{where}.{section}" for k in over}
    return _parse(cls, {**base, **over}, file, origin)


def parse(doc: dict, file: str | Path, default_name: str = "") -> Benchmark:
    """A definition from an already-read TOML document (tests use this directly)."""
    file = str(file)
    for key in doc:
        if key not in _TOP:
            raise SpecError(file, key, "unknown top-level key", ", ".join(sorted(_TOP)))
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise SpecError(file, "name", f"must be a non-empty string, got {name!r}")
    family = doc.get("family")
    if not isinstance(family, str):
        raise SpecError(file, "family", f"missing or not a string: {family!r}",
                        "a family name (the registry checks it against suite/families/)")
    for section in ("data", "train", "eval"):
        if section in doc and not isinstance(doc[section], dict):
            raise SpecError(file, section, "must be a table")
    scales_doc = doc.get("scales")
    if not isinstance(scales_doc, dict) or not scales_doc:
        raise SpecError(file, "scales", "missing; declare at least one scale", ", ".join(SCALES))
    scales = {sname: _scale(doc, sname, st, file) for sname, st in scales_doc.items()}
    arms_doc = doc.get("arms")
    if not isinstance(arms_doc, dict) or not arms_doc:
        raise SpecError(file, "arms", "missing; declare at least [arms.baseline]")
    arms = {}
    for aname, at in arms_doc.items():
        if not isinstance(at, dict) or not isinstance(at.get("method"), str):
            raise SpecError(file, f"arms.{aname}.method", "missing or not a string")
        opts = {k: v for k, v in at.items() if k not in ("method", "train")}
        arms[aname] = Arm(aname, at["method"], opts, check_arm_train(at.get("train", {}),
                                                                   file, f"arms.{aname}.train"))
    if arms.get(BASELINE, Arm("", "", {})).method != BASELINE:  # what every saving is against
        raise SpecError(file, f"arms.{BASELINE}", "missing" if BASELINE not in arms else
                        f"method {arms[BASELINE].method!r}: the arm every other arm is compared "
                        "with must be plain training", f'[arms.{BASELINE}] method = "{BASELINE}"')
    gate_doc = doc.get("gate", {})
    if not isinstance(gate_doc, dict):
        raise SpecError(file, "gate", "must be a table")
    gate = _parse(GateSpec, gate_doc, file, {"": "gate"})
    if not gate.matched_budgets or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1
            for f in gate.matched_budgets):
        raise SpecError(file, "gate.matched_budgets", f"must be fractions in (0, 1], got "
                        f"{list(gate.matched_budgets)}", "e.g. [0.5, 0.6, 0.7, 0.8, 0.9]")
    for key in ("claims_at", "unresolved_at"):
        if bad := [s for s in getattr(gate, key) if s not in SCALES]:
            raise SpecError(file, f"gate.{key}", f"unknown scale(s) {bad}", ", ".join(SCALES))
    ck_doc = doc.get("checkpoint", {})
    if not isinstance(ck_doc, dict):
        raise SpecError(file, "checkpoint", "must be a table")
    checkpoint = _parse(CheckpointSpec, ck_doc, file, {"": "checkpoint"})
    from suite import protocol  # it builds on this module's Arm and SpecError

    tuning = protocol.parse_tuning(doc["tuning"], file, arms, scales) if "tuning" in doc else None
    sweeps = protocol.parse_sweeps(doc.get("sweeps", {}), file, arms, scales)
    return Benchmark(name, file, str(doc.get("description", "")), family, scales, arms, gate,
                     checkpoint, tuning, sweeps)


def _scale(doc: dict, sname: str, st: Any, file: str) -> Scale:
    """One [scales.NAME] table, with the top-level data/train/eval tables under it."""
    where = f"scales.{sname}"
    if sname not in SCALES:
        raise SpecError(file, where, "unknown scale", ", ".join(SCALES))
    if not isinstance(st, dict):
        raise SpecError(file, where, "must be a table")
    for key in st:
        if key not in _SCALE_KEYS:
            raise SpecError(file, f"{where}.{key}", "unknown key", ", ".join(sorted(_SCALE_KEYS)))
    for key in ("model", "steps", "batch_size"):
        if key not in st:
            raise SpecError(file, f"{where}.{key}", "missing")
    if not isinstance(st["model"], dict):
        raise SpecError(file, f"{where}.model", "must be a table of sizes, e.g. "
                        "{ hidden = 128, layers = 4, heads = 4 }")
    return Scale(
        name=sname,
        model=dict(st["model"]),
        steps=_positive_int(st["steps"], file, f"{where}.steps", "training steps"),
        batch_size=_positive_int(st["batch_size"], file, f"{where}.batch_size", "batch size"),
        seq_len=(_positive_int(st["seq_len"], file, f"{where}.seq_len", "tokens per sequence")
                 if "seq_len" in st else 0),
        data=_section(DataSpec, doc, st, "data", file, where),
        train=_section(Optim, doc, st, "train", file, where),
        eval=_section(EvalSpec, doc, st, "eval", file, where),
        seeds=(_positive_int(st["seeds"], file, f"{where}.seeds", "seeds per arm by default")
               if "seeds" in st else 1),
        origin={f"{sec}.{k}": f"{where}.{sec}.{k}" for sec in ("data", "train", "eval")
                for k in (st.get(sec) or {})},
    )


def load(path: str | Path) -> Benchmark:
    """One definition file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(path, "(file)", "no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(path, "(syntax)", f"not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(path, "(file)", f"cannot read: {e}") from None
    return parse(doc, path, default_name=path.stem)


def with_data_source(bench: Benchmark, scale: str, source: str) -> Benchmark:
    """The same definition with one scale's data source replaced (`--data PATH`)."""
    s = bench.scale(scale)
    new = dataclasses.replace(s, data=dataclasses.replace(s.data, source=source))
    return dataclasses.replace(bench, scales={**bench.scales, scale: new})
