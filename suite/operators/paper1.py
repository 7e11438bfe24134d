"""Paper 1's operators (Zou et al., ICLR 2024), written once against the families' layouts, in
the row-vector convention y = x W:
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
de-coalescing function-preserving for pre-LN models too (`embedding_scaling`, docs/methods.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from suite.families import Axes, Family, family_of
from suite.operators.inherit import assemble
from suite.operators.layout import OperatorError, axes_of, split

DEPTH_PAIRINGS = ("adjacent", "stacked")
EMBEDDING_SCALINGS = ("reference", "preserving")


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

def _coarser(fam: Family, size: dict[str, int], width: bool, depth: bool) -> dict[str, int]:
    """The family's one halving rule (Family.coarser), as an OperatorError."""
    try:
        return fam.coarser(size, width=width, depth=depth)
    except ValueError as e:
        raise OperatorError(f"{fam.name}: {e}; coalescing needs an even size") from None


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
    return _roles(axes_of(fam, name, block), sum_emb, at_head_norm)


def coalesce(model: nn.Module, *, width: bool = True, depth: bool = True,
             depth_pairing: str = "adjacent",
             embedding_scaling: str = "reference") -> nn.Module:
    """A new model half as wide (hidden, heads, FFN and e.g. llama's kv_heads; head size kept)
    and half as deep: paper 1's coalescing (Zou et al., ICLR 2024; docs/methods.md: width U = F_in W
    F_out, depth by averaging block pairs, `depth_pairing`). `width`/`depth` = False keeps that
    dimension. The result inherits everything of `model` but the shape (inherit.py: merged
    block i from blocks 2i and 2i+1, or i and i + L/2). Raises
    OperatorError for a dimension that does not halve evenly, an unknown option or a parameter
    without a layout rule; TypeError for a model of no family."""
    _options(depth_pairing, embedding_scaling)
    fam = family_of(model)
    size, _, _ = fam.describe(model)
    small = _coarser(fam, size, width, depth)
    outer, blocks = split(model, fam)
    sources = [[i] for i in range(len(blocks))]
    if depth:
        sources = [list(pair) for pair in _pairs(len(blocks) // 2, depth_pairing)]
        blocks = [{k: (blocks[a][k] + blocks[b][k]) / 2 for k in blocks[a]} for a, b in sources]
    if width:
        outer = {k: _width(v, _tensor_roles(fam, k, False, embedding_scaling), _halve)
                 for k, v in outer.items()}
        blocks = [{k: _width(v, _tensor_roles(fam, k, True, embedding_scaling), _halve)
                   for k, v in blk.items()} for blk in blocks]
    new = fam.resize(model, small).to(next(model.parameters()).device)
    return assemble(new, fam, outer, blocks, model, sources)


def decoalesce(small: nn.Module, like: nn.Module, *, depth_pairing: str = "adjacent",
               embedding_scaling: str = "reference") -> nn.Module:
    """A model shaped like `like` (2x the width and/or depth of `small`), grown from `small` by
    the pseudo-inverse of `coalesce` (paper 1's de-coalescing, docs/methods.md):
    coalesce(decoalesce(S, like=M)) == S. Only the parameter values come from `small`; the rest
    (settings, requires_grad, modes, buffers, dtypes) is `like`'s, block by block
    (suite/operators/inherit.py). Raises OperatorError when `like` is not 2x `small` in each
    dimension that differs, or for an unknown option or a family mismatch."""
    _options(depth_pairing, embedding_scaling)
    fam = family_of(small)
    if family_of(like) is not fam:
        raise OperatorError(f"decoalesce: small is {fam.name}, like is {family_of(like).name}")
    s_size, _, _ = fam.describe(small)
    b_size, _, _ = fam.describe(like)
    width = b_size["hidden"] != s_size["hidden"]
    depth = b_size["layers"] != s_size["layers"]
    for key in ("hidden", "heads", "ffn", *fam.width_keys, "layers"):
        if key not in b_size:
            continue
        grow = 2 if (depth if key == "layers" else width) else 1
        if b_size[key] != grow * s_size[key]:
            raise OperatorError(f"decoalesce: like has {key}={b_size[key]}, small has "
                                f"{s_size[key]}; expected {grow * s_size[key]}")
    outer, blocks = split(small, fam)
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
    new = copy.deepcopy(like)  # the architecture and settings of `like`
    return assemble(new, fam, outer, blocks, like, [[j] for j in range(len(blocks))])


def interpolate(big: nn.Module, grown: nn.Module, alpha: float) -> nn.Module:
    """(1 - alpha) * big + alpha * grown for every parameter (paper 1's interpolation, the
    V-cycle's symmetry breaking; docs/methods.md); exact at alpha 0 and 1. A copy of `big` with new
    values: every other property, buffers included, is big's. Raises OperatorError for alpha
    outside [0, 1] or models whose parameter names or shapes differ."""
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


# ------------------------------------------------------------------ as transfers of a plan

def coalesce_transfer(o: dict, model: nn.Module,
                      saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """Coalesce level o["from"]; the model is kept in `saved` for its later interpolation."""
    saved[o["from"]] = model
    return coalesce(model, **_operator_options(o)), operator_flops(model, "coalesce")


def decoalesce_interpolate_transfer(o: dict, model: nn.Module,
                                    saved: dict[int, nn.Module]) -> tuple[nn.Module, int]:
    """De-coalesce to level o["to"] and interpolate with that level's saved model, never with
    another run's result."""
    big = saved.pop(o["to"])
    grown = decoalesce(model, like=big, **_operator_options(o))
    cost = operator_flops(big, "decoalesce") + operator_flops(big, "interpolate")
    return interpolate(big, grown, o["alpha"]), cost


def _operator_options(o: dict) -> dict:
    return {k: o[k] for k in ("depth_pairing", "embedding_scaling") if k in o}
