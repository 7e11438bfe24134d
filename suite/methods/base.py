"""What every method module builds and declares: Plans of Train and Transfer steps, options with
their schema, and the Method record the registry (suite/methods/__init__.py) holds.

A baseline is a Plan with one Train step; the multilevel methods are Plans with many; pricing a
Plan without training (`--dry-run`) and the per-level cost breakdown both fall out of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from suite.errors import SuiteError
from suite.families import Family
from suite.spec import Arm, Optim, Scale


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
    # what its savings are judged on (suite.spec.CRITERIA keys): the method's declaration,
    # filled in by suite.methods.plan and recorded in the manifest for the judge to read
    criteria: tuple[str, ...] = ("heldout_loss",)

    @property
    def train_steps(self) -> int:
        return sum(s.steps for s in self.steps if isinstance(s, Train))

    @property
    def main_steps(self) -> int:
        """Steps of the arm's own model (paper 2's coarse helpers excluded)."""
        return sum(s.steps for s in self.steps if isinstance(s, Train) and not s.auxiliary)


class MethodError(SuiteError, ValueError):
    """An arm whose options its method cannot use; names the key and what is allowed."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


StepCost = Callable[[dict[str, int]], int]  # size table -> FLOPs of one training step


def optim_of(scale: Scale) -> Optim:
    """The definition's [train] table at this scale: the baseline's optimiser and schedule."""
    return scale.train


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
    "budget": Option(None, "a fraction of the baseline's budget: the whole plan, its stages and "
                     "schedules, is made for that many of the baseline's steps (a matched-budget "
                     "baseline, `baseline@budget=0.7`; a budget ladder); recorded only when set",
                     lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                     and 0 < v <= 1, "a fraction in (0, 1]"),
}


def options(arm: Arm, schema: dict[str, Option], defaults: dict[str, Any]) -> dict[str, Any]:
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
        if not _allowed(schema[key], value):
            raise MethodError(f"arms.{arm.name}.{key}", f"{value!r} is not allowed; allowed: "
                              f"{schema[key].allowed} ({schema[key].doc})")
        out[key] = value
    return out


def _allowed(option: Option, value: Any) -> bool:
    try:  # a plug-in's check may compare before it tests the type ('abc' < 1 raises)
        return bool(option.check(value))
    except Exception:  # noqa: BLE001 - a value the check cannot handle is not allowed
        return False


def frac(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1


def num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def coarser(size: dict[str, int], levels_down: int = 1, key: str = "levels",
            family: Family | None = None) -> dict[str, int]:
    """The size table `levels_down` coalescings below `size`, by the family's one halving rule
    (Family.coarser: half width, heads, FFN, the family's other width keys, and depth); with
    no family, the rule of the families without other width keys. Raises MethodError (under
    `key`) naming the dimension that does not halve evenly."""
    from suite.families import FAMILIES

    try:
        return (family or FAMILIES["gpt2"]).coarser(size, levels_down)
    except ValueError as e:
        raise MethodError(key, str(e)) from None


PlanFn = Callable[[Arm, Scale, Family | None, StepCost | None], Plan]


@dataclass(frozen=True)
class Method:
    """A method as the registry holds it: its options (schema, defaults, docs), what builds its
    Plan (`plan(arm, scale, family, cost)`, raising MethodError naming the arm's key), and the
    transfer operators its plans use (names in suite.operators.OPERATORS, each with its FLOP
    cost; a plug-in registers its own there first), and the criteria it is judged on."""

    name: str
    options: dict[str, Option]
    plan: PlanFn
    operators: tuple[str, ...] = ()
    doc: str = ""
    # the curve fields its savings are judged on (suite.spec.CRITERIA keys); every method is
    # judged on the held-out loss, and may add others (paper 2's: the training loss)
    criteria: tuple[str, ...] = ("heldout_loss",)
