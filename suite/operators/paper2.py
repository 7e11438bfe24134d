"""Paper 2's operators (Lauga et al., arXiv 2504.18590): coarse models of the even or odd blocks
of a pre-LN decoder (restrict) and the weighted average back into the fine model (prolongate,
Eq. 4)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from suite.families import Family, family_of, get_path, set_path
from suite.operators.inherit import inherit
from suite.operators.layout import OperatorError

PARITIES = ("even", "odd")
SHARED = ("averaged", "tied")


def owned_blocks(n_blocks: int, parity: str) -> list[int]:
    """0-based fine blocks of a coarse model: "even" = blocks 2, 4, .., N and "odd" = blocks
    1, 3, .., N-1 in the paper's 1-based numbering."""
    if parity not in PARITIES:
        raise OperatorError(f"parity={parity!r}; allowed: {', '.join(PARITIES)}")
    return list(range(1 if parity == "even" else 0, n_blocks, 2))


def _euler_family(model: nn.Module) -> Family:
    fam = family_of(model)
    if not fam.layout.euler_blocks:
        from suite.families import FAMILIES

        euler = ", ".join(f.name for f in FAMILIES.values() if f.layout.euler_blocks)
        raise OperatorError(f"{fam.name} is not a pre-LN residual decoder (x + F(x) blocks); "
                            f"restrict/prolongate apply to: {euler}")
    return fam


def _outer_params(model: nn.Module, blocks_path: str) -> list[tuple[nn.Module, str]]:
    """(module, attribute) of every parameter outside the blocks, tied ones included."""
    out = []
    for mname, mod in model.named_modules():
        if mname == blocks_path or mname.startswith(blocks_path + "."):
            continue
        out += [(mod, pname) for pname, p in mod._parameters.items() if p is not None]
    return out


def restrict(model: nn.Module, parity: str, *, shared: str = "averaged",
             coarse_step: int = 1) -> nn.Module:
    """A coarse model of N/2 blocks made of the fine model's even or odd blocks (copies; paper
    2's restriction by injection) and its embedding, final norm and head: copies under
    shared="averaged", the very same tensors under "tied". `coarse_step` scales each coarse
    block's residual branch (the ODE step; 2 doubles it). Coarse block j inherits everything of
    the fine block it copies (suite/operators/inherit.py). Raises OperatorError for a family
    that is not a pre-LN decoder, an odd block count or an unknown option."""
    fam = _euler_family(model)
    if shared not in SHARED:
        raise OperatorError(f"shared={shared!r}; allowed: {', '.join(SHARED)}")
    if coarse_step not in (1, 2) or isinstance(coarse_step, bool):
        raise OperatorError(f"coarse_step={coarse_step!r}; allowed: 1, 2")
    if coarse_step != 1 and not fam.layout.residual_scale:
        raise OperatorError(f"coarse_step={coarse_step}: {fam.name} blocks cannot scale their "
                            "residual branch; use the decoder family or coarse_step = 1")
    blocks = get_path(model, fam.layout.blocks)
    if len(blocks) % 2:
        raise OperatorError(f"{fam.name}: layers={len(blocks)} is odd; the odd/even coarse "
                            "models need an even number of blocks")
    idx = owned_blocks(len(blocks), parity)
    # copy only what the coarse model keeps: swap its blocks in for the duration of the copy
    set_path(model, fam.layout.blocks, nn.ModuleList(blocks[i] for i in idx))
    try:
        coarse = copy.deepcopy(model)
    finally:
        set_path(model, fam.layout.blocks, blocks)
    for j, blk in enumerate(get_path(coarse, fam.layout.blocks)):
        if fam.layout.residual_scale:
            blk.residual_scale = blk.residual_scale * coarse_step  # relative: the fine step kept
        for sub in blk.modules():  # HF attention indexes its KV cache by block position
            if isinstance(getattr(sub, "layer_idx", None), int):
                sub.layer_idx = j
    if "layers" in fam.config_keys and hasattr(coarse, "config"):
        setattr(coarse.config, fam.config_keys["layers"], len(idx))
    if shared == "tied":
        fine_params = {id(mod): mod for mod, _ in _outer_params(model, fam.layout.blocks)}
        pairs = zip(_outer_params(coarse, fam.layout.blocks),
                    _outer_params(model, fam.layout.blocks), strict=True)
        for (cmod, name), (fmod, fname) in pairs:
            assert name == fname and id(fmod) in fine_params
            setattr(cmod, name, getattr(fmod, name))
    return inherit(coarse, fam, model, [[i] for i in idx])


def prolongate(fine: nn.Module, coarse: nn.Module, parity: str, delta: float = 0.25, *,
               shared: str = "averaged") -> nn.Module:
    """In place: theta_fine <- (1 - delta) theta_fine + delta theta_coarse (paper 2, Eq. 4)
    for the blocks the coarse model owns, and for the embedding, final norm and head under
    shared="averaged" (under "tied" coarse training already updated them). Returns `fine`,
    whose shapes, flags, modes and buffers are untouched: only values change. Raises
    OperatorError for delta outside [0, 1] or a coarse model of the wrong block count."""
    fam = _euler_family(fine)
    if not 0.0 <= delta <= 1.0:
        raise OperatorError(f"prolongate: delta={delta}; allowed: 0 <= delta <= 1")
    fblocks, cblocks = get_path(fine, fam.layout.blocks), get_path(coarse, fam.layout.blocks)
    idx = owned_blocks(len(fblocks), parity)
    if len(cblocks) != len(idx):
        raise OperatorError(f"prolongate: the coarse model has {len(cblocks)} blocks, the "
                            f"{parity} blocks of the fine model are {len(idx)}")
    pairs = [(fblocks[i], cblocks[j]) for j, i in enumerate(idx)]
    with torch.no_grad():
        for fb, cb in pairs:
            for (_, pf), (_, pc) in zip(fb.named_parameters(), cb.named_parameters(), strict=True):
                pf.lerp_(pc, delta)
        if shared == "averaged":
            seen: set[int] = set()  # a tied embedding/head is one tensor: average it once
            for (fm, name), (cm, _) in zip(_outer_params(fine, fam.layout.blocks),
                                           _outer_params(coarse, fam.layout.blocks), strict=True):
                pf, pc = getattr(fm, name), getattr(cm, name)
                if pf is not pc and id(pf) not in seen:
                    seen.add(id(pf))
                    pf.lerp_(pc, delta)
    return fine


# ------------------------------------------------------------------ as transfers of a plan

def restrict_transfer(o: dict, model: nn.Module,
                      saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """The coarse model of o["parity"]; the fine model waits in saved[1]. Copies only: 0 FLOPs."""
    saved[1] = model
    return restrict(model, o["parity"], shared=o["shared"], coarse_step=o["coarse_step"]), 0


def prolongate_transfer(o: dict, model: nn.Module,
                        saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """The fine model, moved toward the coarse one by o["delta"] (Eq. 4): one lerp, 3 FLOPs a
    parameter of the coarse model."""
    fine = saved.pop(1)
    prolongate(fine, model, o["parity"], o["delta"], shared=o["shared"])
    return fine, 3 * sum(p.numel() for p in model.parameters())
