"""What a model an operator builds inherits from the model it comes from: everything but the
shape (issue 22). Every operator that builds blocks ends in `inherit`; this docstring is the
definition, and `python -m suite check-operators` prints a table of it per family and operator.

Sources. Each new block comes from one or more blocks of a source model (the first one listed is
its primary source); everything outside the blocks (embeddings, final norm, head, the model
itself) comes from the source's part of the same name:
- coalesce: merged block i from blocks (2i, 2i+1) ("adjacent") or (i, i + L/2) ("stacked");
  width-only coalescing: block i from block i. Source: the model coalesced.
- stack: new block i from block i mod L (the block it is a copy of).
- restrict: coarse block j from the fine block it copies (owned_blocks).
- decoalesce: block j from block j of `like`, the model it is shaped like (the V-cycle's saved
  model); `small` gives the parameter values only.
- interpolate and prolongate build no blocks: interpolate is a copy of `big` with new values,
  prolongate changes `fine` in place; everything but the values is big's / fine's.

What is inherited, per new block from its sources, and outside the blocks by name:
- requires_grad, per parameter: frozen only if the parameter is frozen in every source (a
  merged weight that was partly being trained keeps training; one source: its flag).
- dtype, per parameter: the sources' dtype (promoted if they differ, so a merge never rounds
  a wider half); device: the primary source's.
- training/eval mode, per sub-module (the block itself included; the model's own mode too): in
  eval mode only if it is in every source, so a sub-module the user set to eval stays in eval
  whatever the model's mode.
- buffers, per sub-module: every buffer of the sources (user-registered or the constructor's),
  value, dtype, device and persistent flag, from the first source that has it; a copy per
  new block. A constructor buffer whose shape changed with the size keeps the new model's
  value, in the source's dtype and device (none of the five families has one: the head size
  is kept, so a llama's rotary inv_freq is the source's, bf16 in a bf16 model). Buffers are
  not resized: one whose shape follows the width is the user's to resize. A buffer in a
  sub-module the new model does not have raises OperatorError: it is never silently dropped.
Consequence: no operator changes a dtype or a buffer, so one that preserves the function does
so in the source's dtype too: coalesce(decoalesce(S, like=M)) gives a bf16 S's logits bit for
bit (the last column of check-operators' inheritance table)."""

from __future__ import annotations

import functools

import torch
from torch import nn

from suite.families import Family, get_path
from suite.operators.layout import OperatorError, load

Sources = list[list[int]]  # per new block: indices of the source blocks it comes from


def inherit(new: nn.Module, fam: Family, source: nn.Module, sources: Sources) -> nn.Module:
    """Give `new` (an operator's result, values loaded) every property of `source` but the
    shape, as the module docstring defines: `sources[i]` lists the blocks of `source` that new
    block i comes from. Returns `new`. Raises OperatorError for a sources list that does not
    match the blocks, or a buffer with nowhere to go."""
    new_blocks, src_blocks = get_path(new, fam.layout.blocks), get_path(source, fam.layout.blocks)
    if len(sources) != len(new_blocks) or any(
            not idx or not all(0 <= i < len(src_blocks) for i in idx) for idx in sources):
        raise OperatorError(f"{fam.name}: {len(new_blocks)} new blocks, sources {sources} of "
                            f"{len(src_blocks)} blocks")
    _inherit_outer(new, source, fam.layout.blocks)
    for blk, idx in zip(new_blocks, sources, strict=True):
        _inherit_block(blk, [src_blocks[i] for i in idx])
    return new


def _outside(name: str, blocks: str) -> bool:
    return name != blocks and not name.startswith(blocks + ".")


def _inherit_outer(new: nn.Module, source: nn.Module, blocks: str) -> None:
    """Modes, parameter properties and buffers of every part outside the blocks, by name."""
    mods = {n: m for n, m in new.named_modules() if _outside(n, blocks)}
    src = {n: m for n, m in source.named_modules() if _outside(n, blocks)}
    for name, mod in mods.items():
        if name in src:
            mod.training = src[name].training
            _inherit_params(mod, [src[name]])
    _inherit_buffers(mods, [src], where="the model")


def _inherit_block(blk: nn.Module, srcs: list[nn.Module]) -> None:
    """Modes and parameter properties per sub-module from every source; buffers from the first
    source that has them."""
    trees = [dict(s.named_modules()) for s in srcs]
    mods = dict(blk.named_modules())
    for path, mod in mods.items():
        have = [t[path] for t in trees if path in t]
        if have:
            mod.training = any(m.training for m in have)
            _inherit_params(mod, have)
    _inherit_buffers(mods, trees, where="a block")


def _inherit_params(mod: nn.Module, srcs: list[nn.Module]) -> None:
    """A module's own parameters: trainable if trainable in any source; the sources' dtype
    (promoted), the first source's device."""
    for name, p in mod._parameters.items():
        have = [s._parameters[name] for s in srcs if s._parameters.get(name) is not None]
        if p is None or not have:
            continue
        dtype = functools.reduce(torch.promote_types, (q.dtype for q in have))
        if p.dtype != dtype or p.device != have[0].device:
            p.data = p.data.to(device=have[0].device, dtype=dtype)
        p.requires_grad_(any(q.requires_grad for q in have))


def _inherit_buffers(mods: dict[str, nn.Module], trees: list[dict[str, nn.Module]],
                     where: str) -> None:
    """Every buffer of the source trees (first tree first) into the module of the same path."""
    done: set[tuple[str, str]] = set()
    for tree in trees:
        for path, smod in tree.items():
            for name, buf in smod._buffers.items():
                if (path, name) in done:
                    continue
                done.add((path, name))
                if path not in mods:
                    raise OperatorError(f"buffer {name!r} of {where}'s sub-module {path!r}: the "
                                        "new model has no such sub-module to carry it")
                persistent = name not in smod._non_persistent_buffers_set
                _place_buffer(mods[path], name, buf, persistent)


def _place_buffer(mod: nn.Module, name: str, buf: torch.Tensor | None,
                  persistent: bool) -> None:
    own = mod._buffers.get(name)
    if buf is None:
        value = None
    elif own is not None and own.shape != buf.shape:  # the constructor's, sized for the new size
        value = own.to(device=buf.device, dtype=buf.dtype)
    else:
        value = buf.detach().clone().requires_grad_(buf.requires_grad)
    try:
        mod.register_buffer(name, value, persistent=persistent)
    except KeyError as e:  # the name is a parameter or attribute of the new model's module
        raise OperatorError(f"buffer {name!r}: {e}") from None


def assemble(new: nn.Module, fam: Family, outer: dict[str, torch.Tensor],
             blocks: list[dict[str, torch.Tensor]], source: nn.Module,
             sources: Sources) -> nn.Module:
    """The one way an operator fills the model it built: the values (`outer` by full name,
    `blocks` by name inside each block; layout.load), then everything else from `source`
    (`inherit`). Returns `new`."""
    return inherit(load(new, fam, outer, blocks), fam, source, sources)
