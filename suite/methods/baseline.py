"""Plain training: the baseline every other arm is measured against."""

from __future__ import annotations

from suite.families import Family
from suite.methods.base import Method, Plan, StepCost, Train, optim_of, options
from suite.spec import Arm, Scale


def plan(arm: Arm, scale: Scale, family: Family | None = None,
         cost: StepCost | None = None) -> Plan:
    """One stage of `scale.steps` steps with the definition's optimiser. Takes only the COMMON
    options (a `note`); raises MethodError for any other."""
    o = options(arm, {}, {})
    return Plan("baseline", o, (Train(1, dict(scale.model), scale.steps, optim_of(scale)),))


METHOD = Method("baseline", {}, plan, (), "plain training")
