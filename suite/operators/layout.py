"""What every operator shares: a model's parameters split by the family's layout (outside the
blocks by name, one dict per block), and their values loaded back into a model of the new
shape (suite/operators/inherit.py then gives it everything else of the old one)."""

from __future__ import annotations

import re

import torch
from torch import nn

from suite.errors import SuiteError
from suite.families import Axes, Family, get_path


class OperatorError(SuiteError, ValueError):
    """A model the operators cannot handle; the message names the dimension or parameter."""


def axes_of(fam: Family, name: str, block: bool) -> Axes:
    rules = fam.layout.block_axes if block else fam.layout.outer_axes
    for pattern, axes in rules:
        if re.fullmatch(pattern, name):
            return axes
    raise OperatorError(f"{fam.name}: no layout rule for parameter {name!r}; the operators "
                        "would not know how to resize it (a model option the suite does not "
                        "support, or a library version whose names changed)")


def split(model: nn.Module, fam: Family) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Parameters as (outside the blocks by full name, one dict per block by inner name)."""
    prefix = fam.layout.blocks + "."
    outer: dict[str, torch.Tensor] = {}
    blocks: list[dict[str, torch.Tensor]] = [{} for _ in get_path(model, fam.layout.blocks)]
    for name, p in model.named_parameters():  # tied parameters appear once
        if name.startswith(prefix):
            idx, inner = name[len(prefix):].split(".", 1)
            blocks[int(idx)][inner] = p.detach()
        else:
            outer[name] = p.detach()
    for name in outer:
        axes_of(fam, name, block=False)
    for i, blk in enumerate(blocks):
        for name in blk:
            axes_of(fam, name, block=True)
        if blk.keys() != blocks[0].keys():
            raise OperatorError(f"{fam.name}: block {i} has parameters "
                                f"{sorted(blk.keys() ^ blocks[0].keys())} that block 0 has not")
    return outer, blocks


def load(model: nn.Module, fam: Family, outer: dict, blocks: list[dict]) -> nn.Module:
    """Copy the values in `outer` and `blocks` into `model`'s parameters (each keeps its own
    dtype: `inherit` then gives it the source's). Raises OperatorError for a name or shape the
    model does not have."""
    params = dict(model.named_parameters())
    new = dict(outer)
    for i, blk in enumerate(blocks):
        new.update({f"{fam.layout.blocks}.{i}.{k}": v for k, v in blk.items()})
    if set(new) != set(params):
        raise OperatorError(f"{fam.name}: parameter names differ after resizing: "
                            f"{sorted(set(new) ^ set(params))[:4]}")
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != new[name].shape:
                raise OperatorError(f"{name}: operator produced {tuple(new[name].shape)}, the "
                                    f"model needs {tuple(p.shape)}")
            p.copy_(new[name])
    return model
