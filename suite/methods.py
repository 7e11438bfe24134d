"""Methods turn an arm of a definition into a Plan: an ordered list of Train and Transfer steps.

A baseline is a Plan with one Train step. The multilevel methods (later) are Plans with many;
pricing a Plan without training (`--dry-run`) and the per-level cost breakdown both fall out of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from suite.spec import Arm, Scale
from suite.train import Optim


@dataclass(frozen=True)
class Train:
    level: int  # 1 = the target model, as in paper 1's M_1
    model: dict[str, int]  # the family's size table at this level
    steps: int
    optim: Optim


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


class MethodError(ValueError):
    """An arm whose options its method cannot use; names the key and what is allowed."""


def optim_of(scale: Scale) -> Optim:
    t = scale.train
    return Optim(t.optimizer, t.lr, t.weight_decay, tuple(t.betas), t.momentum, t.warmup, t.decay,
                 t.min_lr_ratio, t.grad_clip)


def baseline(arm: Arm, scale: Scale) -> Plan:
    if arm.options:
        raise MethodError(f"arms.{arm.name}: the baseline takes no options, got "
                          f"{', '.join(arm.options)}")
    return Plan("baseline", {}, (Train(1, dict(scale.model), scale.steps, optim_of(scale)),))


METHODS = {"baseline": baseline}


def plan(arm: Arm, scale: Scale) -> Plan:
    if arm.method not in METHODS:
        raise MethodError(f"arms.{arm.name}.method: unknown method {arm.method!r}; allowed: "
                          f"{', '.join(METHODS)}")
    return METHODS[arm.method](arm, scale)
