"""Shrink (Ash & Adams, NeurIPS 2020, "shrink and perturb", without the perturbation): train,
scale every weight by `shrink` once, train on with a fresh optimiser to the same budget. An
example of a method from a package of its own: one new operator, one plan, nothing else."""

import torch

from suite.methods import Method, Option, Plan, Train, Transfer, optim_of
from suite.methods.base import options
from suite.operators import Operator, register


def _shrink(o, model, saved):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(o["shrink"])
    return model, sum(p.numel() for p in model.parameters())  # one multiply a parameter


register(Operator("shrink", _shrink, evaluate_after=True, doc="every weight times `shrink`"))

OPTIONS = {
    "at": Option(0.5, "when to shrink, a fraction of the steps",
                 lambda v: isinstance(v, float) and 0 < v < 1, "a fraction in (0, 1)"),
    "shrink": Option(0.9, "the factor", lambda v: isinstance(v, float) and 0 < v <= 1,
                     "a number in (0, 1]"),
}


def plan(arm, scale, family=None, cost=None):
    o = options(arm, OPTIONS, {})
    first = max(1, round(o["at"] * scale.steps))
    base = optim_of(scale)
    return Plan("shrink", o, (Train(1, dict(scale.model), first, base),
                              Transfer("shrink", {"shrink": o["shrink"]}),
                              Train(1, dict(scale.model), scale.steps - first, base)))


METHOD = Method("shrink", OPTIONS, plan, ("shrink",), "train, shrink the weights, train on")
