"""Methods turn an arm of a definition into a Plan: an ordered list of Train and Transfer steps.

A baseline is a Plan with one Train step. The multilevel methods (later) are Plans with many;
pricing a Plan without training (`--dry-run`) and the per-level cost breakdown both fall out of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suite.spec import Arm, Scale
from suite.train import Optim, lr_factor


@dataclass(frozen=True)
class Train:
    level: int  # 1 = the target model, as in paper 1's M_1
    model: dict[str, int]  # the family's size table at this level
    steps: int
    optim: Optim
    # (start, total): follow one long schedule instead of a fresh one for this stage
    schedule: tuple[int, int] | None = None
    auxiliary: bool = False  # a coarse model that is not the arm's model: no evaluation
    keep_optimizer: bool = False  # go on with the optimiser state of this level's last stage


@dataclass(frozen=True)
class Transfer:
    operator: str
    options: dict[str, Any] = field(default_factory=dict)


Step = Train | Transfer


@dataclass(frozen=True)
class Plan:
    method: str
    options: dict[str, Any]  # the method's resolved options, recorded in the manifest
    steps: tuple[Step, ...]

    @property
    def train_steps(self) -> int:
        return sum(s.steps for s in self.steps if isinstance(s, Train))

    @property
    def main_steps(self) -> int:
        """Steps of the arm's own model (paper 2's coarse helpers excluded)."""
        return sum(s.steps for s in self.steps if isinstance(s, Train) and not s.auxiliary)


class MethodError(ValueError):
    """An arm whose options its method cannot use; names the key and what is allowed."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


StepCost = Callable[[dict[str, int]], int]  # size table -> FLOPs of one training step


def optim_of(scale: Scale) -> Optim:
    t = scale.train
    return Optim(t.optimizer, t.lr, t.weight_decay, tuple(t.betas), t.momentum, t.warmup, t.decay,
                 t.min_lr_ratio, t.grad_clip)


@dataclass(frozen=True)
class Option:
    default: Any
    doc: str
    check: Callable[[Any], bool]
    allowed: str


# Options every method accepts. `note` changes nothing in the plan: it says what an arm is (an
# ablation, an adaptation of a paper) and travels with the run, for the report to show.
COMMON = {
    "note": Option(None, "free text recorded in the manifest (plan.options) and shown in the "
                   "report, e.g. 'adaptation: AdamW, not paper 2's SGD'; recorded only when set",
                   lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
}


def _options(arm: Arm, schema: dict[str, Option], defaults: dict[str, Any]) -> dict[str, Any]:
    """The arm's options over the method's defaults, each checked, plus the COMMON options the arm
    sets (an unset `note` is not recorded, so plans without one keep their options).
    Raises MethodError naming `arms.<arm>.<key>` for an unknown option or a value not allowed."""
    own, schema = schema, schema | COMMON
    for key in arm.options:
        if key not in schema:
            raise MethodError(f"arms.{arm.name}.{key}", f"unknown option of method "
                              f"{arm.method!r}; allowed: {', '.join(own) or 'none of its own'}; "
                              f"any method: {', '.join(COMMON)}")
    out = {k: o.default for k, o in schema.items() if k not in COMMON} | defaults
    for key, value in arm.options.items():
        if not schema[key].check(value):
            raise MethodError(f"arms.{arm.name}.{key}", f"{value!r} is not allowed; allowed: "
                              f"{schema[key].allowed} ({schema[key].doc})")
        out[key] = value
    return out


def _frac(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def baseline(arm: Arm, scale: Scale, cost: StepCost | None = None) -> Plan:
    """Plain training: one stage of `scale.steps` steps with the definition's optimiser. Takes
    only the COMMON options (a `note`); raises MethodError for any other."""
    o = _options(arm, {}, {})
    return Plan("baseline", o, (Train(1, dict(scale.model), scale.steps, optim_of(scale)),))


# Paper 1's V-cycle. Defaults from METHODS.md; alpha's default depends on the family (0.5 for
# BERT, 0.25 for GPT and DeiT) and is set per benchmark in its definition.
VCYCLE = {
    "levels": Option(2, "number of levels K (the target model is level 1)",
                     lambda v: isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 4,
                     "2, 3 or 4"),
    "alpha": Option(0.25, "interpolation weight of the de-coalesced model",
                    lambda v: _num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "e_a": Option(0.05, "steps each level trains before it is coalesced, as a fraction of "
                  "the baseline's steps", _frac, "a fraction in (0, 1)"),
    "e_small": Option(0.5, "steps of the smallest level, as a fraction of the baseline's steps",
                      _frac, "a fraction in (0, 1)"),
    "e_up": Option(None, "steps of each intermediate level on the way back up (3+ levels), as "
                   "a fraction of the baseline's steps; default: e_a", _frac,
                   "a fraction in (0, 1)"),
    "coarse_lr_scale": Option(4.0, "peak lr of a level = this x the peak lr of the level above "
                              "(the public GPT-2 example: 4e-4 for the small model, 1e-4 for "
                              "the big one)", lambda v: _num(v) and v > 0, "a positive number"),
    "first_stage": Option("warmup", "schedule of the E_a stages: the whole stage is a linear "
                          "warm-up (public code) or the definition's schedule",
                          lambda v: v in ("warmup", "schedule"), "warmup, schedule"),
    "later_stages": Option("decay-from-peak", "schedule of every stage after the E_a stage(s) "
                           "(the smallest level, intermediate levels on the way up, the last "
                           "level-1 stage): 'decay-from-peak' = no warm-up, linear decay (even "
                           "where the definition's is cosine) from the stage's peak lr to the "
                           "definition's min_lr_ratio x that peak "
                           "(public code: 'small model 50K steps at LR 4e-4 linear decay, big "
                           "model 50K steps at 1e-4 linear decay'); 'definition' = the "
                           "definition's warm-up and decay, afresh in each stage",
                           lambda v: v in ("decay-from-peak", "definition"),
                           "decay-from-peak, definition"),
    "depth_pairing": Option("adjacent", "which fine blocks merge into a coarse one",
                            lambda v: v in ("adjacent", "stacked"), "adjacent, stacked"),
    "embedding_scaling": Option("reference", "x2 on tied embeddings (public code) or on the "
                                "norm before the tied head (function-preserving)",
                                lambda v: v in ("reference", "preserving"),
                                "reference, preserving"),
    "optimizer_policy": Option("fresh", "optimiser state at each transfer: a fresh optimiser "
                               "and schedule per stage, as the public code does",
                               lambda v: v == "fresh", "fresh"),
    "budget": Option("flops", "the last level-1 stage runs until the arm has spent the "
                     "baseline's FLOPs", lambda v: v == "flops", "flops"),
}


def coarser(size: dict[str, int], levels_down: int = 1, key: str = "levels") -> dict[str, int]:
    """The size table `levels_down` coalescings below `size`: half width, heads, FFN and depth.
    Raises MethodError (under `key`) naming the dimension that does not halve evenly."""
    out = {**size, "ffn": size.get("ffn") or 4 * size["hidden"]}
    for _ in range(levels_down):
        for dim in ("hidden", "heads", "ffn", "layers"):
            if out[dim] % 2:
                raise MethodError(key, f"model {dim}={out[dim]} does not halve evenly (halving "
                                  f"{size} {levels_down} times)")
            out[dim] //= 2
    return out


def vcycle(arm: Arm, scale: Scale, cost: StepCost | None = None) -> Plan:
    """Paper 1's V-cycle (METHODS.md, "V-cycle schedule"): E_a stages down, the smallest level,
    the intermediate levels up, then level 1 for what is left of the baseline's FLOPs (`cost`:
    FLOPs of one step of a size; without it the last stage is 1 step, for validation). Stage
    lengths are steps, fractions of the baseline's `scale.steps`. Raises MethodError for a bad
    option, a size that does not halve, or coarse stages that already spend the budget."""
    o = _options(arm, VCYCLE, {})
    o["e_up"] = o["e_up"] or o["e_a"]
    K, base = o["levels"], optim_of(scale)
    sizes = {k: coarser(scale.model, k - 1, f"arms.{arm.name}.levels") for k in range(1, K + 1)}
    n = scale.steps

    def stage(k: int, steps: int, shape: str) -> Train:
        """A level-k stage; `shape`: "warmup" (linear warm-up over the whole stage), "decay"
        (linear decay from the peak, no warm-up) or "definition" (the definition's schedule)."""
        opt = dataclasses.replace(base, lr=base.lr * o["coarse_lr_scale"] ** (k - 1))
        if shape == "warmup":
            opt = dataclasses.replace(opt, warmup=1.0, decay="constant")
        elif shape == "decay":  # the floor stays the definition's min_lr_ratio
            opt = dataclasses.replace(opt, warmup=0.0, decay="linear")
        return Train(k, sizes[k], max(1, steps), opt)

    first = "warmup" if o["first_stage"] == "warmup" else "definition"
    later = "decay" if o["later_stages"] == "decay-from-peak" else "definition"
    ops = {"depth_pairing": o["depth_pairing"], "embedding_scaling": o["embedding_scaling"]}
    steps: list[Step] = []
    for k in range(1, K):
        steps += [stage(k, round(o["e_a"] * n), first), Transfer("coalesce", {"from": k, **ops})]
    steps.append(stage(K, round(o["e_small"] * n), later))
    for k in range(K - 1, 0, -1):
        steps.append(Transfer("decoalesce+interpolate", {"to": k, "alpha": o["alpha"], **ops}))
        if k > 1:
            steps.append(stage(k, round(o["e_up"] * n), later))
    if cost is not None:  # level 1 gets what is left of the baseline's FLOPs
        spent = sum(cost(s.model) * s.steps for s in steps if isinstance(s, Train))
        left = (cost(sizes[1]) * n - spent) // cost(sizes[1])
        if left < 1:
            raise MethodError(f"arms.{arm.name}", "the coarse stages already spend the "
                              "baseline's FLOP budget; lower e_a, e_small or e_up")
        steps.append(stage(1, int(left), later))
    else:  # validation without a meter: the shape of the plan, not its length
        steps.append(stage(1, 1, later))
    return Plan("vcycle", o, tuple(steps))


# Paper 2's odd/even multilevel. Defaults from METHODS.md; at the paper's 16,000 fine steps the
# schedule is exactly the paper's (35 corrections of 2 x 100 coarse SGD steps) whatever the
# scaling options.
ODE = {
    "coarse_until": Option(35, "fine iterations t <= coarse_until are followed by coarse work, "
                           "at the paper's 16,000 fine steps",
                           lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                           "an integer >= 0"),
    "until_scaling": Option("absolute", "how coarse_until follows the budget: 'absolute' = as "
                            "given (the record does not say how to scale it); 'proportional' = "
                            "round(coarse_until x fine steps / 16,000), at least 1 (0 stays 0), "
                            "so corrections cover the paper's share of the run",
                            lambda v: v in ("absolute", "proportional"),
                            "absolute, proportional"),
    "coarse_steps": Option(100, "coarse SGD steps per parity per correction, at the paper's "
                           "16,000 fine steps", lambda v: isinstance(v, int) and v >= 1,
                           "an integer >= 1"),
    "coarse_scaling": Option("proportional", "how coarse_steps follows the budget: "
                             "'proportional' = coarse_steps x (fine steps / 16,000), at least 1, "
                             "so coarse work keeps the paper's share of the budget; 'absolute' = "
                             "as given", lambda v: v in ("proportional", "absolute"),
                             "proportional, absolute"),
    "delta": Option(0.25, "prolongation weight (Eq. 4)", lambda v: _num(v) and 0 <= v <= 1,
                    "a number in [0, 1]"),
    "coarse_step": Option(1, "residual scale of coarse blocks (the ODE reading suggests 2)",
                          lambda v: v in (1, 2) and not isinstance(v, bool), "1, 2"),
    "shared": Option("tied", "embedding, final norm and head: 'tied' = the very same tensors, "
                     "updated in place by coarse training (paper 2's figure: 'input and output "
                     "layers are shared across all networks'); 'averaged' = copies, "
                     "prolongated like blocks", lambda v: v in ("tied", "averaged"),
                     "tied, averaged"),
    "coarse_lr_scale": Option(1.0, "coarse lr = this x the fine lr at that iteration",
                              lambda v: _num(v) and v > 0, "a positive number"),
    "optimizer_policy": Option("keep-fine", "the fine model keeps one optimiser (and its "
                               "state) across all its steps; each coarse stage starts a fresh "
                               "one. Exact for SGD without momentum (paper 2); needed for AdamW",
                               lambda v: v == "keep-fine", "keep-fine"),
}
PAPER2_FINE_STEPS = 16_000


def ode_multilevel(arm: Arm, scale: Scale, cost: StepCost | None = None) -> Plan:
    """Paper 2's odd/even schedule (METHODS.md, "Loop"): for fine step t = 1..T, one fine step;
    if t <= coarse_until_run, for even then odd: restrict, coarse_steps_run coarse steps,
    prolongate. Both counts are recorded in the plan's options as run at this scale (`cost` is
    not used: the paper fixes step counts, not FLOPs). Raises MethodError for a bad option or an
    odd number of blocks."""
    o = _options(arm, ODE, {})
    fine_size = {**scale.model, "ffn": scale.model.get("ffn") or 4 * scale.model["hidden"]}
    if fine_size["layers"] % 2:
        raise MethodError(f"arms.{arm.name}.method", f"model layers={fine_size['layers']} is "
                          "odd; the odd/even coarse models need an even number of blocks")
    coarse_size = {**fine_size, "layers": fine_size["layers"] // 2}
    T, base = scale.steps, optim_of(scale)
    k = o["coarse_steps"]
    if o["coarse_scaling"] == "proportional":
        k = max(1, round(k * T / PAPER2_FINE_STEPS))
    o["coarse_steps_run"] = k
    until = o["coarse_until"]
    if o["until_scaling"] == "proportional" and until:
        until = max(1, round(until * T / PAPER2_FINE_STEPS))
    until = min(until, T)  # no correction after the last fine step
    o["coarse_until_run"] = until
    steps: list[Step] = []
    for t in range(until):
        steps.append(Train(1, fine_size, 1, base, schedule=(t, T), keep_optimizer=t > 0))
        lr_t = base.lr * lr_factor(t, T, base) * o["coarse_lr_scale"]
        coarse_optim = dataclasses.replace(base, lr=lr_t, warmup=0.0, decay="constant")
        for parity in ("even", "odd"):
            steps += [
                Transfer("restrict", {"parity": parity, "shared": o["shared"],
                                      "coarse_step": o["coarse_step"]}),
                Train(2, coarse_size, k, coarse_optim, auxiliary=True),
                Transfer("prolongate", {"parity": parity, "delta": o["delta"],
                                        "shared": o["shared"]}),
            ]
    if T > until:
        steps.append(Train(1, fine_size, T - until, base, schedule=(until, T),
                           keep_optimizer=until > 0))
    return Plan("ode-multilevel", o, tuple(steps))


METHODS = {"baseline": baseline, "vcycle": vcycle, "ode-multilevel": ode_multilevel}


def plan(arm: Arm, scale: Scale, cost: StepCost | None = None) -> Plan:
    """The arm's Plan at this scale; `cost` (FLOPs of one step of a size) lets a method fit its
    stages to a FLOP budget. Raises MethodError naming the arm's key."""
    if arm.method not in METHODS:
        raise MethodError(f"arms.{arm.name}.method", f"unknown method {arm.method!r}; "
                          f"allowed: {', '.join(METHODS)}")
    return METHODS[arm.method](arm, scale, cost)
