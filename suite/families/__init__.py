"""Model families: random-initialised builders and a uniform description of where things live.

Each family is one module of this package (bert, gpt2, vit, decoder, llama) that builds a model
from a small size table (hidden, layers, heads, ...), says where its embeddings, residual blocks,
final norm and head are (`Layout`), reads a model's size and settings back, and resizes one
keeping every other setting; the multilevel operators are written once against the layouts.
Adding a family: one module with a FAMILY, and its name in MODULES below.
"""

from __future__ import annotations

import importlib

from torch import nn

from suite.families.base import (
    Axes,
    Family,
    Inputs,
    Layout,
    get_path,
    logits,
    set_path,
)

MODULES = ("bert", "gpt2", "vit", "decoder", "llama")
FAMILIES: dict[str, Family] = {
    f.name: f for f in (importlib.import_module(f"suite.families.{m}").FAMILY for m in MODULES)
}


def family_of(model: nn.Module) -> Family:
    """The family of a model instance; a clear error for anything else."""
    for fam in FAMILIES.values():
        if isinstance(model, fam.model_class()):
            return fam
    raise TypeError(f"{type(model).__name__} is not a supported family; supported: "
                    + ", ".join(f"{f.name} ({f.model_class().__name__})"
                                for f in FAMILIES.values()))


__all__ = ["FAMILIES", "Axes", "Family", "Inputs", "Layout", "family_of", "get_path", "logits",
           "set_path"]
