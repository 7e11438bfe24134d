"""Paper 1's coalescing V-cycle (Zou et al., ICLR 2024; docs/methods.md, "The V-cycle")."""

from __future__ import annotations

import dataclasses

from suite.families import Family
from suite.methods.base import (
    Method,
    MethodError,
    Option,
    Plan,
    Step,
    StepCost,
    Train,
    Transfer,
    coarser,
    frac,
    num,
    optim_of,
    options,
)
from suite.spec import Arm, Scale

# Paper 1's V-cycle. Defaults from the papers (docs/methods.md); alpha's default depends on the
# family (0.5 for BERT, 0.25 for GPT and DeiT) and is set per benchmark in its definition.
VCYCLE = {
    "levels": Option(2, "number of levels K (the target model is level 1)",
                     lambda v: isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 4,
                     "2, 3 or 4"),
    "alpha": Option(0.25, "interpolation weight of the de-coalesced model",
                    lambda v: num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "e_a": Option(0.05, "steps each level trains before it is coalesced, as a fraction of "
                  "the baseline's steps", frac, "a fraction in (0, 1)"),
    "e_small": Option(0.5, "steps of the smallest level, as a fraction of the baseline's steps",
                      frac, "a fraction in (0, 1)"),
    "e_up": Option(None, "steps of each intermediate level on the way back up (3+ levels), as "
                   "a fraction of the baseline's steps; default: e_a", frac,
                   "a fraction in (0, 1)"),
    "coarse_lr_scale": Option(4.0, "peak lr of a level = this x the peak lr of the level above "
                              "(the public GPT-2 example: 4e-4 for the small model, 1e-4 for "
                              "the big one)", lambda v: num(v) and v > 0, "a positive number"),
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
}


def plan(arm: Arm, scale: Scale, family: Family | None = None,
         cost: StepCost | None = None) -> Plan:
    """Paper 1's V-cycle (docs/methods.md, "The V-cycle"): E_a stages down, the smallest level,
    the intermediate levels up, then level 1 for what is left of the baseline's FLOPs (`cost`:
    FLOPs of one step of a size; without it the last stage is 1 step, for validation). Stage
    lengths are steps, fractions of the baseline's `scale.steps`. Raises MethodError for a bad
    option, a size that does not halve, or coarse stages that already spend the budget."""
    o = options(arm, VCYCLE, {})
    o["e_up"] = o["e_up"] or o["e_a"]
    K, base = o["levels"], optim_of(scale)
    sizes = {k: coarser(scale.model, k - 1, f"arms.{arm.name}.levels", family)
             for k in range(1, K + 1)}
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


METHOD = Method("vcycle", VCYCLE, plan, ("coalesce", "decoalesce+interpolate"),
                "paper 1: coalesce, train small, de-coalesce, interpolate, go on")
