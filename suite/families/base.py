"""What every family module fills in (a Family and its Layout), and the helpers they share.
Imports nothing of ours."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub call hangs for a minute offline

# Axis roles of a parameter tensor, one per dimension, for the width operators:
#   "d"   a hidden (residual-width) axis that is an output: coalescing averages pairs
#   "d_in" a hidden axis that is an input: coalescing sums pairs
#   "f", "f_in"  the same for the FFN's intermediate width
#   "3d"  fused q, k, v outputs: three hidden-sized groups, each paired like "d"
#   "e"   an embedding output axis: like "d", or like "d_in" under the reference x2 scaling
#   None  not resized (vocabulary, positions, classes, pixels)
Axes = tuple[str | None, ...]


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where a family keeps its parts, and what every parameter's axes mean. Built by keyword
    only: a record read by position is one swapped field away from a wrong model."""

    blocks: str  # attribute path of the nn.ModuleList of residual blocks, in order
    block_axes: tuple[tuple[str, Axes], ...]  # regex on the name inside a block -> axes
    outer_axes: tuple[tuple[str, Axes], ...]  # regex on the full name of the rest -> axes
    tied_head: bool  # the output projection is the word-embedding matrix
    head_norm: str | None  # the norm right before a tied head (the "preserving" scaling point)
    # paper 2: blocks are forward-Euler steps x + F(x) of a pre-LN decoder (restrict/prolongate)
    euler_blocks: bool = False
    # blocks have a `residual_scale` attribute: the ODE step a coarse level may double
    residual_scale: bool = False


@dataclass(frozen=True)
class Inputs:
    """What the data gives a family to size itself: a vocabulary or an image shape."""

    seq_len: int = 0
    vocab_size: int = 0
    image_size: int = 0
    channels: int = 0
    num_classes: int = 0


@dataclass(frozen=True, kw_only=True)
class Family:
    """A model family: its size keys, how to build, read, resize and lay out one (the operators'
    table), and a customised model for the settings check. Built by keyword only, like
    Layout."""

    name: str
    task: str
    data_kind: str  # "text" or "images"
    size_keys: dict[str, str]  # key -> meaning; every key is a positive int
    optional: dict[str, int] = field(default_factory=dict)
    layout: Layout | None = None
    builder: Callable[[dict[str, int], Inputs, bool], nn.Module] | None = None
    # model -> (size table, inputs, eager attention?): reads any instance, not only ours
    describe: Callable[[nn.Module], tuple[dict[str, int], Inputs, bool]] | None = None
    # model, size -> a random-initialised model of that size, every other setting kept
    resize: Callable[[nn.Module, dict[str, int]], nn.Module] | None = None
    model_class: Callable[[], type] | None = None  # imported lazily
    # model -> every constructor setting that is not a size (activation, norms, dropout,
    # dynamic image size, ...): what an operator must keep (tests/test_settings.py)
    settings: Callable[[nn.Module], dict[str, Any]] | None = None
    # size keys that halve with the width besides hidden, heads and ffn (llama: kv_heads)
    width_keys: tuple[str, ...] = ()
    # size -> further (key, message) problems, e.g. kv_heads that do not divide heads
    extra_check: Callable[[dict[str, int]], list[tuple[str, str]]] | None = None
    # our size key -> the model config's attribute (transformers families), for operators that
    # change a size in place (restrict: the block count)
    config_keys: dict[str, str] = field(default_factory=dict)
    # hidden -> the FFN width when the size table does not give one
    default_ffn: Callable[[int], int] = field(default=lambda hidden: 4 * hidden)
    # family -> a small model (CUSTOMISED size) built with constructor settings other than the
    # suite's: what every operator must keep (suite/checks.py: settings_survival)
    customised: Callable[[Family], nn.Module] | None = None

    def ffn(self, size: dict[str, int]) -> int:
        return size.get("ffn") or self.default_ffn(size["hidden"])

    def resolved(self, size: dict[str, int]) -> dict[str, int]:
        """`size` with every key the family defaults filled in (its optional keys, and the FFN
        width by the family's own rule: 4 x hidden, or llama's SwiGLU 8/3 x hidden): the model
        the family builds from `size`. Compare sizes through this, never by a rule of your
        own."""
        return {**self.optional, **size, "ffn": self.ffn(size)}

    def check(self, size: dict, inputs: Inputs) -> list[tuple[str, str]]:
        """Problems with `size` as (key, message) pairs; empty when the family can build it."""
        errs: list[tuple[str, str]] = []
        allowed = {**self.size_keys, **self.optional}
        for k in size:
            if k not in allowed:
                errs.append((k, f"unknown size key; allowed: {', '.join(sorted(allowed))}"))
        for k in self.size_keys:
            if k not in size:
                errs.append((k, f"missing; {self.name} needs {', '.join(self.size_keys)}"))
        for k, v in size.items():
            if k in allowed and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                errs.append((k, f"must be a positive integer, got {v!r}"))
        if errs:
            return errs
        if size["hidden"] % size["heads"]:
            errs.append(("heads", f"hidden={size['hidden']} is not divisible by "
                                  f"heads={size['heads']}"))
        if self.data_kind == "images" and inputs.image_size and inputs.image_size % size["patch"]:
            errs.append(("patch", f"patch={size['patch']} does not divide the image size "
                                  f"{inputs.image_size}"))
        if self.extra_check is not None:
            errs += self.extra_check({**self.optional, **size})
        return errs

    def coarser(self, size: dict[str, int], times: int = 1, width: bool = True,
                depth: bool = True) -> dict[str, int]:
        """The size table `times` coalescings below `size`: half the width (hidden, heads, ffn
        and the family's `width_keys`, head size kept) and half the depth. The one halving
        rule: plans size their levels with it and coalesce builds with it. Raises ValueError
        naming the dimension that does not halve evenly."""
        out = self.resolved(size)
        keys = (("hidden", "heads", "ffn", *self.width_keys) if width else ()) + \
            (("layers",) if depth else ())
        for _ in range(times):
            for dim in keys:
                if out[dim] % 2:
                    raise ValueError(f"model {dim}={out[dim]} does not halve evenly (halving "
                                     f"{size} {times} times)")
                out[dim] //= 2
        return out

    def build(self, size: dict[str, int], inputs: Inputs,
              eager_attention: bool = False) -> nn.Module:
        """A random-initialised model. `eager_attention` selects the math attention path that
        fvcore can count (it counts the fused kernel as zero)."""
        assert self.builder is not None
        # builders get every default filled in (the FFN width above all): one rule, `resolved`
        return self.builder(self.resolved(size), inputs, eager_attention)


def hf_class(name: str) -> Callable[[], type]:
    def cls() -> type:
        import transformers

        return getattr(transformers, name)

    return cls


def resize_hf(keys: dict[str, str]) -> Callable[[nn.Module, dict[str, int]], nn.Module]:
    """Resize a transformers model through a copy of its config: every other setting kept."""
    def resize(m: nn.Module, size: dict[str, int]) -> nn.Module:
        cfg = copy.deepcopy(m.config)
        for ours, theirs in keys.items():
            if ours in size:
                setattr(cfg, theirs, size[ours])
        return type(m)(cfg)

    return resize


def hf_settings(m: nn.Module, sizes: tuple[str, ...]) -> dict[str, Any]:
    """A transformers model's config minus its size keys: every constructor setting."""
    cfg = m.config.to_dict()
    return {k: v for k, v in cfg.items() if k not in sizes and not k.startswith("_")
            and k not in ("transformers_version",)}


TRANSFORMER = {"hidden": "residual width", "layers": "blocks", "heads": "attention heads"}
CUSTOMISED = {"hidden": 32, "layers": 4, "heads": 4}  # the settings-survival models' size
CUSTOMISED_TEXT = Inputs(seq_len=32, vocab_size=257)


def hf_customised(extra: dict[str, Any]) -> Callable[[Family], nn.Module]:
    """A transformers family's `customised`: its CUSTOMISED model with `extra` set in the
    config (attribute -> a value other than the suite's)."""
    def build(fam: Family) -> nn.Module:
        cfg = copy.deepcopy(fam.build(CUSTOMISED, CUSTOMISED_TEXT, True).config)
        for key, value in extra.items():
            setattr(cfg, key, value)
        return fam.model_class()(cfg)

    return build


LN_RULE = (r".*(LayerNorm|ln_\w+|norm\w*)\.(weight|bias)", ("d",))  # every norm inside a block


def logits(family: Family, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits as a plain tensor, whatever the family's output type."""
    out = model(x)
    return out.logits if hasattr(out, "logits") else out


def get_path(model: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted attribute path of a `Layout`."""
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def set_path(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(get_path(model, parent) if parent else model, name, module)
