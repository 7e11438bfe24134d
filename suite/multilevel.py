"""The multilevel operators, written once against the families' layouts (suite/families.py).

Paper 1 (Zou et al., ICLR 2024), in the row-vector convention y = x W:
- coalesce: width pairs (j, j + n/2) of every hidden / FFN axis are AVERAGED where the axis is an
  output and SUMMED where it is an input (U = F_in W F_out); fused q/k/v and attention heads pair
  (i, i + H/2) with the head size kept, which is the same rule applied to each hidden-sized group.
  Depth: coarse block i = average of fine blocks (2i, 2i+1) ("adjacent", the paper) or
  (i, i + L/2) ("stacked", the public config).
- decoalesce: the pseudo-inverses: outputs duplicated, inputs halved and duplicated, each coarse
  block copied to both places it came from. coalesce(decoalesce(M)) == M.
- interpolate: (1 - alpha) * big + alpha * grown, for every parameter.
Tied heads: "reference" scaling sums instead of averaging the embeddings (x2, the public code);
"preserving" does that to the norm right before the head instead, which makes width
de-coalescing function-preserving for pre-LN models too (see `embedding_scaling` in the README).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import torch
from torch import nn

from suite.families import Axes, Family, family_of, get_path, set_path

DEPTH_PAIRINGS = ("adjacent", "stacked")
EMBEDDING_SCALINGS = ("reference", "preserving")


class OperatorError(ValueError):
    """A model the operators cannot handle; the message names the dimension or parameter."""


def _axes_of(fam: Family, name: str, block: bool) -> Axes:
    rules = fam.layout.block_axes if block else fam.layout.outer_axes
    for pattern, axes in rules:
        if re.fullmatch(pattern, name):
            return axes
    raise OperatorError(f"{fam.name}: no layout rule for parameter {name!r}; the operators "
                        "would not know how to resize it (a model option the suite does not "
                        "support, or a library version whose names changed)")


def _split(model: nn.Module, fam: Family) -> tuple[dict[str, torch.Tensor], list[dict]]:
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
        _axes_of(fam, name, block=False)
    for i, blk in enumerate(blocks):
        for name in blk:
            _axes_of(fam, name, block=True)
        if blk.keys() != blocks[0].keys():
            raise OperatorError(f"{fam.name}: block {i} has parameters "
                                f"{sorted(blk.keys() ^ blocks[0].keys())} that block 0 has not")
    return outer, blocks


def _load(model: nn.Module, fam: Family, outer: dict, blocks: list[dict]) -> nn.Module:
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


# ------------------------------------------------------------------ width, one axis at a time

def _roles(axes: Axes, sum_embeddings: bool, sum_all: bool) -> list[tuple[int, int, str]]:
    """(dimension, groups, "avg" | "sum") for every resized axis of a tensor."""
    out = []
    for dim, a in enumerate(axes):
        if a is None:
            continue
        groups = 3 if a == "3d" else 1
        summed = a.endswith("_in") or (a == "e" and sum_embeddings) or sum_all
        out.append((dim, groups, "sum" if summed else "avg"))
    return out


def _halve(t: torch.Tensor, dim: int, groups: int, how: str) -> torch.Tensor:
    n = t.shape[dim] // groups
    g = t.unflatten(dim, (groups, n))
    a, b = g.narrow(dim + 1, 0, n // 2), g.narrow(dim + 1, n // 2, n // 2)
    merged = a + b if how == "sum" else (a + b) / 2
    return merged.flatten(dim, dim + 1)


def _double(t: torch.Tensor, dim: int, groups: int, how: str) -> torch.Tensor:
    n = t.shape[dim] // groups
    g = t.unflatten(dim, (groups, n))
    if how == "sum":  # the pseudo-inverse of a sum halves what it duplicates
        g = g / 2
    return torch.cat([g, g], dim=dim + 1).flatten(dim, dim + 1)


def _width(t: torch.Tensor, roles: list[tuple[int, int, str]], op: Callable) -> torch.Tensor:
    for dim, groups, how in roles:
        t = op(t, dim, groups, how)
    return t


# ------------------------------------------------------------------ the public operators

def _check_halvable(fam: Family, size: dict[str, int], width: bool, depth: bool) -> None:
    dims = ([("hidden", size["hidden"]), ("heads", size["heads"]), ("ffn", size["ffn"])]
            if width else []) + ([("layers", size["layers"])] if depth else [])
    for key, value in dims:
        if value % 2:
            raise OperatorError(f"{fam.name}: {key}={value} does not halve evenly; coalescing "
                                f"needs an even {key}")


def _options(depth_pairing: str, embedding_scaling: str) -> None:
    if depth_pairing not in DEPTH_PAIRINGS:
        raise OperatorError(f"depth_pairing={depth_pairing!r}; allowed: "
                            f"{', '.join(DEPTH_PAIRINGS)}")
    if embedding_scaling not in EMBEDDING_SCALINGS:
        raise OperatorError(f"embedding_scaling={embedding_scaling!r}; allowed: "
                            f"{', '.join(EMBEDDING_SCALINGS)}")


def _pairs(n_coarse: int, depth_pairing: str) -> list[tuple[int, int]]:
    if depth_pairing == "adjacent":
        return [(2 * i, 2 * i + 1) for i in range(n_coarse)]
    return [(i, i + n_coarse) for i in range(n_coarse)]


def _tensor_roles(fam: Family, name: str, block: bool, embedding_scaling: str) -> list:
    lay = fam.layout
    sum_emb = lay.tied_head and embedding_scaling == "reference"
    at_head_norm = (not block and lay.tied_head and embedding_scaling == "preserving"
                    and lay.head_norm is not None and name.startswith(lay.head_norm + "."))
    return _roles(_axes_of(fam, name, block), sum_emb, at_head_norm)


def coalesce(model: nn.Module, *, width: bool = True, depth: bool = True,
             depth_pairing: str = "adjacent",
             embedding_scaling: str = "reference") -> nn.Module:
    """A new model half as wide (hidden, heads, FFN; head size kept) and half as deep."""
    _options(depth_pairing, embedding_scaling)
    fam = family_of(model)
    size, _, _ = fam.describe(model)
    _check_halvable(fam, size, width, depth)
    outer, blocks = _split(model, fam)
    if depth:
        blocks = [{k: (blocks[a][k] + blocks[b][k]) / 2 for k in blocks[a]}
                  for a, b in _pairs(len(blocks) // 2, depth_pairing)]
    if width:
        outer = {k: _width(v, _tensor_roles(fam, k, False, embedding_scaling), _halve)
                 for k, v in outer.items()}
        blocks = [{k: _width(v, _tensor_roles(fam, k, True, embedding_scaling), _halve)
                   for k, v in blk.items()} for blk in blocks]
    small = {**size, "layers": size["layers"] // (2 if depth else 1)}
    if width:
        small.update(hidden=size["hidden"] // 2, heads=size["heads"] // 2, ffn=size["ffn"] // 2)
    new = fam.resize(model, small)
    new.train(model.training)
    return _load(new.to(next(model.parameters()).device), fam, outer, blocks)


def decoalesce(small: nn.Module, like: nn.Module, *, depth_pairing: str = "adjacent",
               embedding_scaling: str = "reference") -> nn.Module:
    """A model shaped like `like`, grown from `small` by the pseudo-inverse of `coalesce`."""
    _options(depth_pairing, embedding_scaling)
    fam = family_of(small)
    if family_of(like) is not fam:
        raise OperatorError(f"decoalesce: small is {fam.name}, like is {family_of(like).name}")
    s_size, _, _ = fam.describe(small)
    b_size, _, _ = fam.describe(like)
    width = b_size["hidden"] != s_size["hidden"]
    depth = b_size["layers"] != s_size["layers"]
    for key in ("hidden", "heads", "ffn", "layers"):
        grow = 2 if (depth if key == "layers" else width) else 1
        if b_size[key] != grow * s_size[key]:
            raise OperatorError(f"decoalesce: like has {key}={b_size[key]}, small has "
                                f"{s_size[key]}; expected {grow * s_size[key]}")
    outer, blocks = _split(small, fam)
    if width:
        outer = {k: _width(v, _tensor_roles(fam, k, False, embedding_scaling), _double)
                 for k, v in outer.items()}
        blocks = [{k: _width(v, _tensor_roles(fam, k, True, embedding_scaling), _double)
                   for k, v in blk.items()} for blk in blocks]
    if depth:
        grown: list[dict | None] = [None] * (2 * len(blocks))
        for i, (a, b) in enumerate(_pairs(len(blocks), depth_pairing)):
            grown[a], grown[b] = blocks[i], {k: v.clone() for k, v in blocks[i].items()}
        blocks = grown
    new = copy.deepcopy(like)  # the architecture, buffers and settings of `like`
    return _load(new, fam, outer, blocks)


def interpolate(big: nn.Module, grown: nn.Module, alpha: float) -> nn.Module:
    """(1 - alpha) * big + alpha * grown for every parameter; exact at alpha 0 and 1."""
    if not 0.0 <= alpha <= 1.0:
        raise OperatorError(f"interpolate: alpha={alpha}; allowed: 0 <= alpha <= 1")
    b, g = dict(big.named_parameters()), dict(grown.named_parameters())
    if {k: v.shape for k, v in b.items()} != {k: v.shape for k, v in g.items()}:
        raise OperatorError("interpolate: the two models differ in parameter names or shapes")
    out = copy.deepcopy(big)
    with torch.no_grad():
        for name, p in out.named_parameters():
            p.copy_(torch.lerp(b[name].detach(), g[name].detach(), alpha))
    return out


def operator_flops(model: nn.Module, operator: str) -> int:
    """Elementwise cost of an operator, counted as one FLOP per add or multiply on every
    parameter of the larger model: coalesce (add + scale) and decoalesce (scale) 2 per
    parameter, interpolate (lerp: sub, mul, add) 3. Negligible next to a training step."""
    n = sum(p.numel() for p in model.parameters())
    return {"coalesce": 2, "decoalesce": 2, "interpolate": 3}[operator] * n


# ------------------------------------------------------------------ paper 2: odd / even levels

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
        raise OperatorError(f"{fam.name} is not a pre-LN residual decoder (x + F(x) blocks); "
                            "restrict/prolongate apply to: gpt2, decoder")
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
    """A coarse model made of the fine model's even or odd blocks (copies) and its embedding,
    final norm and head: copies under shared="averaged", the very same tensors under "tied".
    `coarse_step` scales each coarse block's residual branch (the ODE step; 2 doubles it)."""
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
            blk.residual_scale = float(coarse_step)
        for sub in blk.modules():  # HF attention indexes its KV cache by block position
            if isinstance(getattr(sub, "layer_idx", None), int):
                sub.layer_idx = j
    if hasattr(coarse, "config") and hasattr(coarse.config, "n_layer"):
        coarse.config.n_layer = len(idx)
    if shared == "tied":
        fine_params = {id(mod): mod for mod, _ in _outer_params(model, fam.layout.blocks)}
        pairs = zip(_outer_params(coarse, fam.layout.blocks),
                    _outer_params(model, fam.layout.blocks), strict=True)
        for (cmod, name), (fmod, fname) in pairs:
            assert name == fname and id(fmod) in fine_params
            setattr(cmod, name, getattr(fmod, name))
    return coarse


def prolongate(fine: nn.Module, coarse: nn.Module, parity: str, delta: float = 0.25, *,
               shared: str = "averaged") -> nn.Module:
    """In place: theta_fine <- (1 - delta) theta_fine + delta theta_coarse for the blocks the
    coarse model owns, and for the embedding, final norm and head under shared="averaged"
    (under "tied" coarse training already updated them). Returns `fine`."""
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
