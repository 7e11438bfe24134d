"""G_stack (Du et al., NeurIPS 2024, arXiv 2405.15319), the strongest simple growth baseline:
train a model of depth L/g (same width) for d tokens, stack its blocks g times in order to depth
L (suite/operators/stacking.py), then train the full model with a fresh optimiser and schedule
to the baseline's FLOP budget. Written from the paper; its public code (tongxuluo/prts) was read,
not copied.

d: the paper's guideline log10(d) = 0.88 log10(N) + 163.27 / log10(C) - 5.74 (N parameters, C
FLOPs), fitted on 410M-7B models; N is estimated from the meter as step FLOPs / (6 x tokens per
step), C is the baseline's budget. Below (or above) the fitted range the guideline is refused and
the definition declares d as a fraction of the baseline's steps (`d = 0.1`), which the arm's note
should say.
"""

from __future__ import annotations

import math

from suite.families import Family
from suite.methods.base import (
    Method,
    MethodError,
    Option,
    Plan,
    StepCost,
    Train,
    Transfer,
    frac,
    optim_of,
    options,
)
from suite.spec import Arm, Scale

FITTED = (410e6, 7e9)  # parameters of the models the guideline was fitted on

GSTACK = {
    "growth": Option(4, "g: the small model has L/g blocks, stacked g times to L",
                     lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2,
                     "an integer >= 2"),
    "d": Option("guideline", "tokens the small model trains: 'guideline' (the paper's fit, "
                "410M-7B models only) or a fraction of the baseline's steps",
                lambda v: v == "guideline" or frac(v), "guideline, or a fraction in (0, 1)"),
}


def guideline_tokens(params: float, flops: float) -> float:
    """The paper's d: log10(d) = 0.88 log10(N) + 163.27 / log10(C) - 5.74 (Eq. in its Sec. 4)."""
    return 10 ** (0.88 * math.log10(params) + 163.27 / math.log10(flops) - 5.74)


def _small_steps(arm: Arm, scale: Scale, o: dict, cost: StepCost | None) -> int:
    tokens_per_step = scale.batch_size * (scale.seq_len or 1)
    if o["d"] != "guideline":
        return max(1, round(o["d"] * scale.steps))
    if cost is None:  # validation without a meter: the shape of the plan only
        return 1
    step = cost(dict(scale.model))
    params = step / (6 * tokens_per_step)
    if not FITTED[0] <= params <= FITTED[1]:
        raise MethodError(f"arms.{arm.name}.d", f"the guideline was fitted on 410M-7B models; "
                          f"this one has about {params:.3g} parameters (step FLOPs / 6 / tokens): "
                          "declare d as a fraction of the baseline's steps")
    return max(1, round(guideline_tokens(params, step * scale.steps) / tokens_per_step))


def plan(arm: Arm, scale: Scale, family: Family | None = None,
         cost: StepCost | None = None) -> Plan:
    """Small stage (L/g blocks, the definition's schedule), stack, then level 1 for what is
    left of the baseline's FLOPs (`cost`; without it 1 step, for validation). Raises
    MethodError for a depth g does not divide or a small stage that spends the budget."""
    o = options(arm, GSTACK, {})
    g, target = o["growth"], dict(scale.model)
    if target["layers"] % g:
        raise MethodError(f"arms.{arm.name}.growth", f"model layers={target['layers']} is not "
                          f"divisible by growth={g}")
    small = {**target, "layers": target["layers"] // g}
    n_small = _small_steps(arm, scale, o, cost)
    o["small_steps_run"] = n_small
    base = optim_of(scale)
    if cost is None:
        left = 1
    else:
        left = (cost(target) * scale.steps - cost(small) * n_small) // cost(target)
        if left < 1:
            raise MethodError(f"arms.{arm.name}.d", "the small stage already spends the "
                              "baseline's FLOP budget; lower d")
    steps = (Train(2, small, n_small, base), Transfer("stack", {"growth": g}),
             Train(1, target, int(left), base))
    return Plan("gstack", o, steps)


METHOD = Method("gstack", GSTACK, plan, ("stack",),
                "G_stack: train L/g blocks, stack them g times, train the full model")
