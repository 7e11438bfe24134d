"""G_stack's depthwise growth (Du et al., NeurIPS 2024, arXiv 2405.15319): a model of depth L/g
grown to depth L by stacking its blocks g times in order, block list [0 .. L/g - 1] repeated g
times, with everything outside the blocks (embeddings, final norm, head) kept as it is. Written
against the families' layouts, so every family with one can grow; the paper's public code
(tongxuluo/prts) was read, not copied."""

from __future__ import annotations

from torch import nn

from suite.families import family_of
from suite.operators.inherit import assemble
from suite.operators.layout import OperatorError, split


def stack(model: nn.Module, growth: int) -> nn.Module:
    """A new model `growth` times as deep (L blocks -> growth x L): block i is a copy of block
    i mod L of `model` (G_stack, Du et al., NeurIPS 2024). Everything of `model` but the depth is
    kept, block i taking block i mod L's requires_grad flags, modes and buffers
    (suite/operators/inherit.py). Raises OperatorError for a growth factor that is not an
    integer >= 2; TypeError for a model of no family."""
    if not isinstance(growth, int) or isinstance(growth, bool) or growth < 2:
        raise OperatorError(f"stack: growth={growth!r}; allowed: an integer >= 2")
    fam = family_of(model)
    size, _, _ = fam.describe(model)
    outer, blocks = split(model, fam)
    sources = [[i % len(blocks)] for i in range(growth * len(blocks))]
    deep = [{k: v.clone() for k, v in blocks[i].items()} for (i,) in sources]
    new = fam.resize(model, {**size, "layers": growth * size["layers"]})
    return assemble(new.to(next(model.parameters()).device), fam, outer, deep, model, sources)


def stack_transfer(o: dict, model: nn.Module,
                   saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """Grow the trained small model to the target depth. Copies only: 0 FLOPs."""
    return stack(model, o["growth"]), 0
