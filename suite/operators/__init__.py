"""The multilevel operators, written once against the families' layouts (suite/families/), one
module per paper: paper1 (coalesce, decoalesce, interpolate), paper2 (restrict, prolongate),
stacking (G_stack); what a model they build keeps of the one it comes from (everything but the
shape: flags, modes, buffers, dtypes) is defined once, in inherit. A plan's Transfer steps name
them through OPERATORS: each says what it does to the run's models and what it costs in FLOPs,
so the runner and the meter learn nothing new when a method adds one (`register`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from suite.operators.layout import OperatorError
from suite.operators.paper1 import (
    DEPTH_PAIRINGS,
    EMBEDDING_SCALINGS,
    coalesce,
    coalesce_transfer,
    decoalesce,
    decoalesce_interpolate_transfer,
    interpolate,
    operator_flops,
)
from suite.operators.paper2 import (
    PARITIES,
    SHARED,
    owned_blocks,
    prolongate,
    prolongate_transfer,
    restrict,
    restrict_transfer,
)
from suite.operators.stacking import stack, stack_transfer

Apply = Callable[[dict[str, Any], nn.Module, dict[int, nn.Module]], tuple[nn.Module, int]]


@dataclass(frozen=True)
class Operator:
    """A Transfer step's meaning. `apply(options, model, saved)` returns the model that trains
    next and the operator's FLOPs; `saved` holds models a later transfer needs (the V-cycle's
    pre-coalescing model, paper 2's fine model). `evaluate_after`: the arm's own model changed
    size, so the curve gets a point right after it."""

    name: str
    apply: Apply
    evaluate_after: bool
    doc: str


OPERATORS: dict[str, Operator] = {}


def register(op: Operator) -> Operator:
    """Add an operator (a method plug-in's own); raises OperatorError for a name taken by
    another one."""
    if op.name in OPERATORS and OPERATORS[op.name] is not op:
        raise OperatorError(f"operator {op.name!r} is already registered")
    OPERATORS[op.name] = op
    return op


def apply(name: str, options: dict[str, Any], model: nn.Module,
          saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """Run the Transfer `name`: (the model that trains next, the operator's FLOPs). Raises
    OperatorError for an unknown one, naming those known, and for a result the meter cannot
    count (a plug-in's operator returning no model, or FLOPs that are not an integer >= 0)."""
    if name not in OPERATORS:
        raise OperatorError(f"unknown transfer operator {name!r}; known: "
                            f"{', '.join(sorted(OPERATORS))}")
    out = OPERATORS[name].apply(options, model, saved)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], nn.Module)):
        raise OperatorError(f"operator {name!r} returned {type(out).__name__}; an operator "
                            "returns (the model that trains next, its FLOPs)")
    cost = out[1]
    if not isinstance(cost, int) or isinstance(cost, bool) or cost < 0:
        raise OperatorError(f"operator {name!r} returned FLOPs {cost!r}; allowed: an integer "
                            ">= 0 (what the transfer cost, counted in the arm's budget)")
    return out


for _op in (
    Operator("coalesce", coalesce_transfer, True, "paper 1: half width and depth"),
    Operator("decoalesce+interpolate", decoalesce_interpolate_transfer, True,
             "paper 1: back up a level, interpolated with that level's saved model"),
    Operator("restrict", restrict_transfer, False, "paper 2: the even or odd blocks' coarse "
             "model"),
    Operator("prolongate", prolongate_transfer, False, "paper 2: the fine model moved toward "
             "the coarse one"),
    Operator("stack", stack_transfer, True, "G_stack: blocks repeated to the target depth"),
):
    register(_op)

__all__ = ["DEPTH_PAIRINGS", "EMBEDDING_SCALINGS", "OPERATORS", "PARITIES", "SHARED",
           "Operator", "OperatorError", "apply", "coalesce", "decoalesce", "interpolate",
           "operator_flops", "owned_blocks", "prolongate", "register", "restrict", "stack"]
