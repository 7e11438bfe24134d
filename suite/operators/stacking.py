"""G_stack's depthwise growth (Du et al., NeurIPS 2024, arXiv 2405.15319): a model of depth L/g
grown to depth L by stacking its blocks g times in order, block list [0 .. L/g - 1] repeated g
times, with everything outside the blocks (embeddings, final norm, head) kept as it is. Written
against the families' layouts, so every family with one can grow; the paper's public code
(tongxuluo/prts) was read, not copied."""

from __future__ import annotations

from torch import nn

from suite.families import family_of
from suite.operators.layout import OperatorError, load, split


def stack(model: nn.Module, growth: int) -> nn.Module:
    """A new model `growth` times as deep: block i is a copy of block i mod L/g of `model`.
    Every setting and parameter property of `model` but the depth is kept. Raises
    OperatorError for a growth factor below 2."""
    if not isinstance(growth, int) or isinstance(growth, bool) or growth < 2:
        raise OperatorError(f"stack: growth={growth!r}; allowed: an integer >= 2")
    fam = family_of(model)
    size, _, _ = fam.describe(model)
    outer, blocks = split(model, fam)
    deep = [{k: v.clone() for k, v in blocks[i % len(blocks)].items()}
            for i in range(growth * len(blocks))]
    new = fam.resize(model, {**size, "layers": growth * size["layers"]})
    new.train(model.training)
    return load(new.to(next(model.parameters()).device), fam, outer, deep, like=model)


def stack_transfer(o: dict, model: nn.Module,
                   saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """Grow the trained small model to the target depth. Copies only: 0 FLOPs."""
    return stack(model, o["growth"]), 0
