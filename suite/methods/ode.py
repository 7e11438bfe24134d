"""Paper 2's ODE odd/even multilevel (Lauga et al., arXiv 2504.18590; docs/methods.md,
"Paper 2: the odd/even multilevel schedule")."""

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
    num,
    optim_of,
    options,
)
from suite.spec import Arm, Scale, lr_factor

# Paper 2's odd/even multilevel. Defaults from the papers (docs/methods.md); at the paper's
# 16,000 fine steps the schedule is exactly the paper's (35 corrections of 2 x 100 coarse SGD
# steps) whatever the scaling options.
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
    "delta": Option(0.25, "prolongation weight (Eq. 4)", lambda v: num(v) and 0 <= v <= 1,
                    "a number in [0, 1]"),
    "coarse_step": Option(1, "residual scale of coarse blocks (the ODE reading suggests 2)",
                          lambda v: v in (1, 2) and not isinstance(v, bool), "1, 2"),
    "shared": Option("tied", "embedding, final norm and head: 'tied' = the very same tensors, "
                     "updated in place by coarse training (paper 2's figure: 'input and output "
                     "layers are shared across all networks'); 'averaged' = copies, "
                     "prolongated like blocks", lambda v: v in ("tied", "averaged"),
                     "tied, averaged"),
    "coarse_lr_scale": Option(1.0, "coarse lr = this x the fine lr at that iteration",
                              lambda v: num(v) and v > 0, "a positive number"),
    "optimizer_policy": Option("keep-fine", "the fine model keeps one optimiser (and its "
                               "state) across all its steps; each coarse stage starts a fresh "
                               "one. Exact for SGD without momentum (paper 2); needed for AdamW",
                               lambda v: v == "keep-fine", "keep-fine"),
}
PAPER2_FINE_STEPS = 16_000


def plan(arm: Arm, scale: Scale, family: Family | None = None,
         cost: StepCost | None = None) -> Plan:
    """Paper 2's odd/even schedule (docs/methods.md): for fine step t = 1..T, one fine step;
    if t <= coarse_until_run, for even then odd: restrict, coarse_steps_run coarse steps,
    prolongate. Both counts are recorded in the plan's options as run at this scale (`cost` is
    not used: the paper fixes step counts, not FLOPs). Raises MethodError for a bad option or an
    odd number of blocks."""
    o = options(arm, ODE, {})
    # the FFN width by the family's own rule (llama's SwiGLU is not 4 x hidden): the fine
    # model must be the baseline's
    fine_size = {**scale.model, **({"ffn": family.ffn(scale.model)} if family else {})}
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


METHOD = Method(name="ode-multilevel", options=ODE, plan=plan,
                operators=("restrict", "prolongate"),
                doc="paper 2: coarse even/odd models between fine steps, prolongated back",
                # paper 2 states its result on the training loss
                criteria=("heldout_loss", "train_loss"))
