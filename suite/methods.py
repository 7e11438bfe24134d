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


def _options(arm: Arm, schema: dict[str, Option], defaults: dict[str, Any]) -> dict[str, Any]:
    """The arm's options over the method's defaults, each checked; errors name the key."""
    for key in arm.options:
        if key not in schema:
            raise MethodError(f"arms.{arm.name}.{key}", f"unknown option of method "
                              f"{arm.method!r}; allowed: {', '.join(schema) or 'none'}")
    out = {k: o.default for k, o in schema.items()} | defaults
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
    _options(arm, {}, {})
    return Plan("baseline", {}, (Train(1, dict(scale.model), scale.steps, optim_of(scale)),))


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
    o = _options(arm, VCYCLE, {})
    o["e_up"] = o["e_up"] or o["e_a"]
    K, base = o["levels"], optim_of(scale)
    sizes = {k: coarser(scale.model, k - 1, f"arms.{arm.name}.levels") for k in range(1, K + 1)}
    n = scale.steps

    def stage(k: int, steps: int, warmup_only: bool = False) -> Train:
        opt = dataclasses.replace(base, lr=base.lr * o["coarse_lr_scale"] ** (k - 1))
        if warmup_only:
            opt = dataclasses.replace(opt, warmup=1.0, decay="constant")
        return Train(k, sizes[k], max(1, steps), opt)

    warm = o["first_stage"] == "warmup"
    ops = {"depth_pairing": o["depth_pairing"], "embedding_scaling": o["embedding_scaling"]}
    steps: list[Step] = []
    for k in range(1, K):
        steps += [stage(k, round(o["e_a"] * n), warm), Transfer("coalesce", {"from": k, **ops})]
    steps.append(stage(K, round(o["e_small"] * n)))
    for k in range(K - 1, 0, -1):
        steps.append(Transfer("decoalesce+interpolate", {"to": k, "alpha": o["alpha"], **ops}))
        if k > 1:
            steps.append(stage(k, round(o["e_up"] * n)))
    if cost is not None:  # level 1 gets what is left of the baseline's FLOPs
        spent = sum(cost(s.model) * s.steps for s in steps if isinstance(s, Train))
        left = (cost(sizes[1]) * n - spent) // cost(sizes[1])
        if left < 1:
            raise MethodError(f"arms.{arm.name}", "the coarse stages already spend the "
                              "baseline's FLOP budget; lower e_a, e_small or e_up")
        steps.append(stage(1, int(left)))
    else:  # validation without a meter: the shape of the plan, not its length
        steps.append(stage(1, 1))
    return Plan("vcycle", o, tuple(steps))


# Paper 2's odd/even multilevel. Defaults from METHODS.md; at the paper's 16,000 fine steps the
# schedule is exactly the paper's (35 corrections of 2 x 100 coarse SGD steps).
ODE = {
    "coarse_until": Option(35, "fine iterations t <= coarse_until are followed by coarse work",
                           lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                           "an integer >= 0"),
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
    "shared": Option("averaged", "embedding, final norm and head: prolongated like blocks, or "
                     "the very same tensors coarse training updates",
                     lambda v: v in ("averaged", "tied"), "averaged, tied"),
    "coarse_lr_scale": Option(1.0, "coarse lr = this x the fine lr at that iteration",
                              lambda v: _num(v) and v > 0, "a positive number"),
    "optimizer_policy": Option("keep-fine", "the fine model keeps one optimiser (and its "
                               "state) across all its steps; each coarse stage starts a fresh "
                               "one. Exact for SGD without momentum (paper 2); needed for AdamW",
                               lambda v: v == "keep-fine", "keep-fine"),
}
PAPER2_FINE_STEPS = 16_000


def ode_multilevel(arm: Arm, scale: Scale, cost: StepCost | None = None) -> Plan:
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
    steps: list[Step] = []
    until = min(o["coarse_until"], T)
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
