"""Cheap exact-numerics checks of the operators on random models of every family, as a table:
`python -m suite check-operators`. The tests assert the same identities; this prints the
figures (max relative error) for a report or a closing note."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from suite import operators as ML
from suite.families import FAMILIES, Inputs, family_of, get_path, logits
from suite.families.base import CUSTOMISED

TEXT = Inputs(seq_len=32, vocab_size=257)
IMAGES = Inputs(image_size=28, channels=1, num_classes=10)


def _model(name: str, size: dict[str, int], seed: int) -> torch.nn.Module:
    fam = FAMILIES[name]
    torch.manual_seed(seed)
    if fam.data_kind == "images":
        return fam.build({**size, "patch": 7}, IMAGES, True).eval()
    return fam.build(size, TEXT, True).eval()


def _example(name: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    if FAMILIES[name].data_kind == "images":
        return torch.randn(4, 1, 28, 28, generator=g)
    return torch.randint(0, 256, (4, 32), generator=g)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def operator_exactness(hidden: int = 128, layers: int = 4, heads: int = 4) -> list[list]:
    """Rows: family, round-trip error per scaling, width de-coalescing logit drift per scaling."""
    base = {"hidden": hidden, "layers": layers, "heads": heads}
    rows = []
    for name, fam in FAMILIES.items():
        size = {**base, **({"kv_heads": heads // 2} if "kv_heads" in fam.optional else {})}
        row: list = [name]
        for scaling in ML.EMBEDDING_SCALINGS:
            small = ML.coalesce(_model(name, size, 1), embedding_scaling=scaling)
            grown = ML.decoalesce(small, like=_model(name, size, 0), embedding_scaling=scaling)
            back = ML.coalesce(grown, embedding_scaling=scaling)
            ps = dict(small.named_parameters())
            row.append(max(_rel(p.detach(), ps[k].detach()) for k, p in back.named_parameters()))
        x = _example(name)
        for scaling in ML.EMBEDDING_SCALINGS:
            narrow = ML.coalesce(_model(name, size, 1), depth=False, embedding_scaling=scaling)
            wide = ML.decoalesce(narrow, like=_model(name, size, 0), embedding_scaling=scaling)
            with torch.no_grad():
                row.append(_rel(logits(fam, wide, x), logits(fam, narrow, x)))
        rows.append(row)
    return rows


HEADERS = ["family", "coalesce(decoalesce(M)) vs M, reference",
           "coalesce(decoalesce(M)) vs M, preserving", "width de-coalescing logit drift, reference",
           "width de-coalescing logit drift, preserving"]


# ------------------------------------------------------------------ settings survive operators

def customised(name: str) -> torch.nn.Module:
    """Family `name`'s own model with settings other than the suite's (Family.customised), in
    float64, with one parameter frozen: what every operator must keep. Raises ValueError for a
    family that declares none."""
    fam = FAMILIES[name]
    if fam.customised is None:
        raise ValueError(f"family {name!r} declares no `customised` model (suite/families/"
                         f"{name}.py); the settings-survival check needs one")
    torch.manual_seed(0)
    model = fam.customised(fam).double()
    next(model.parameters()).requires_grad_(False)
    return model


def _after(op: str, model: torch.nn.Module) -> torch.nn.Module:
    if op == "coalesce":
        return ML.coalesce(model)
    if op == "decoalesce":
        return ML.decoalesce(ML.coalesce(model), like=model)
    if op == "interpolate":
        return ML.interpolate(model, ML.decoalesce(ML.coalesce(model), like=model), 0.5)
    if op == "restrict":
        return ML.restrict(model, "even", shared="averaged")
    if op == "prolongate":
        return ML.prolongate(copy.deepcopy(model), ML.restrict(model, "odd"), "odd", 0.5)
    return ML.stack(model, 2)


def properties(model: torch.nn.Module) -> dict[str, tuple]:
    """Per parameter (block parameters by their name inside block 0): dtype, device and
    requires_grad, the properties of a parameter other than its shape."""
    fam = family_of(model)
    out = {}
    for name, p in model.named_parameters():
        key = name
        prefix = fam.layout.blocks + "."
        if name.startswith(prefix):
            key = prefix + "*." + name[len(prefix):].split(".", 1)[1]
        out[key] = (p.dtype, p.device.type, p.requires_grad)
    return out


def settings_survival() -> list[list]:
    """Rows: family, operator, settings kept / compared, parameter properties kept, and what
    was lost (empty when nothing was)."""
    rows = []
    for name, fam in FAMILIES.items():
        ops = ["coalesce", "decoalesce", "interpolate", "stack"]
        if fam.layout.euler_blocks:
            ops[3:3] = ["restrict", "prolongate"]
        for op in ops:
            model = customised(name)
            before, props = fam.settings(model), properties(model)
            after = _after(op, model)
            now = fam.settings(after)
            lost = sorted(k for k in before if now.get(k) != before[k])
            got = properties(after)
            bad = sorted(k for k in got if got[k] != props.get(k, got[k]))
            rows.append([name, op, f"{len(before) - len(lost)}/{len(before)}",
                         "yes" if not bad else f"no: {', '.join(bad[:3])}",
                         ", ".join(lost) or "-"])
    return rows


SURVIVAL_HEADERS = ["family", "operator", "settings kept", "parameter dtype, device, "
                    "requires_grad kept", "lost"]


# ------------------------------------------------------------------ inheritance (issue 22)

# What `prepared` does by hand, by index: sorted parameter names inside a block that are frozen,
# and the block's children set to eval (the model itself stays in train mode).
FROZEN = {0: (0, 1), 1: (1, -1)}
IN_EVAL = {0: (0,), 1: (0, -1)}
OPS = ("coalesce", "decoalesce", "interpolate", "restrict", "prolongate", "stack")


def prepared_size(name: str) -> dict[str, int]:
    """The size `prepared` builds: CUSTOMISED (4 blocks), llama with grouped-query attention."""
    return {**CUSTOMISED, **({"kv_heads": 2} if name == "llama" else {})}


def prepared(name: str, size: dict[str, int] | None = None,
             dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Family `name`'s model as a user prepares it by hand: in `dtype` (all five families run
    bf16), in train mode with some sub-modules in eval (FROZEN/IN_EVAL of blocks 0 and 1, and the
    head), parameters frozen in blocks 0 and 1 and outside them (the first one), and buffers the
    user registered: on the model (float64, and a non-persistent bool one), on every block
    (its index), on block 1 only (non-persistent) and on a sub-module of block 1."""
    fam = FAMILIES[name]
    model = _model(name, size or prepared_size(name), 0).to(dtype).train()
    blocks = get_path(model, fam.layout.blocks)
    for i, picks in FROZEN.items():
        names = sorted(n for n, _ in blocks[i].named_parameters())
        for k in picks:
            blocks[i].get_parameter(names[k]).requires_grad_(False)
    for i, picks in IN_EVAL.items():
        children = [c for _, c in blocks[i].named_children()]
        for k in picks:
            children[k].eval()
    next(model.parameters()).requires_grad_(False)
    list(model.children())[-1].eval()
    model.register_buffer("user_scale", torch.tensor([0.5, 2.0], dtype=torch.float64))
    model.register_buffer("user_mask", torch.tensor([True, False]), persistent=False)
    for i, blk in enumerate(blocks):
        blk.register_buffer("user_step", torch.tensor(i))
    blocks[1].register_buffer("user_scratch", torch.full((3,), 1.5), persistent=False)
    next(blocks[1].children()).register_buffer("user_stat", torch.arange(4.0, dtype=dtype))
    return model


def expected_sources(op: str, n_blocks: int) -> list[list[int]]:
    """The issue's reading of where each block of `_after(op, model)` comes from: coalesce's
    adjacent pairs, stack's i mod L, restrict("even")'s blocks 1, 3, .. and otherwise block i
    of the model itself (decoalesce's `like`, interpolate's `big`, prolongate's `fine`)."""
    if op == "coalesce":
        return [[2 * i, 2 * i + 1] for i in range(n_blocks // 2)]
    if op == "stack":
        return [[i % n_blocks] for i in range(2 * n_blocks)]
    if op == "restrict":
        return [[i] for i in ML.owned_blocks(n_blocks, "even")]
    return [[i] for i in range(n_blocks)]


def _parts(model: nn.Module, blocks: str) -> tuple[dict[str, nn.Module], list[dict]]:
    """(every sub-module outside the blocks by name, each block's sub-modules by inner path)."""
    outer = {n: m for n, m in model.named_modules()
             if n != blocks and not n.startswith(blocks + ".")}
    return outer, [dict(b.named_modules()) for b in get_path(model, blocks)]


def _state(mods: dict[str, nn.Module], at: str) -> dict[tuple[str, str], Any]:
    """(kind, where) -> what an operator must keep: "modes" (training), "flags"
    (requires_grad), "dtype" (dtype and device of a parameter or buffer), "buffers" (a
    buffer's shape, persistence and value)."""
    out: dict[tuple[str, str], Any] = {}
    for path, m in mods.items():
        out[("modes", f"{at}{path}")] = m.training
        for n, p in m._parameters.items():
            if p is not None:
                out[("flags", f"{at}{path}.{n}")] = p.requires_grad
                out[("dtype", f"{at}{path}.{n}")] = (p.dtype, p.device.type)
        for n, b in m._buffers.items():
            if b is not None:
                out[("dtype", f"{at}{path}:{n}")] = (b.dtype, b.device.type)
                out[("buffers", f"{at}{path}:{n}")] = (
                    tuple(b.shape), n not in m._non_persistent_buffers_set,
                    b.detach().cpu().double().flatten().tolist())
    return out


def _merged(states: list[dict]) -> dict:
    """The state a block made from several sources should have (suite/operators/inherit.py):
    in train mode / trainable if any source is, dtypes promoted, buffers from the first."""
    out: dict = {}
    for state in states:
        for key, value in state.items():
            if key not in out:
                out[key] = value
            elif key[0] in ("modes", "flags"):
                out[key] = out[key] or value
            elif key[0] == "dtype" and ":" not in key[1]:
                out[key] = (torch.promote_types(out[key][0], value[0]), out[key][1])
    return out


def inheritance_lost(source: nn.Module, new: nn.Module, sources: list[list[int]]) -> dict:
    """What `new` lost of what it should inherit from `source` (new block j from the blocks
    `sources[j]`): kind -> the places, empty when nothing was lost."""
    fam = family_of(source)
    s_outer, s_blocks = _parts(source, fam.layout.blocks)
    n_outer, n_blocks = _parts(new, fam.layout.blocks)
    if len(n_blocks) != len(sources):
        return {"blocks": [f"{len(n_blocks)} blocks, {len(sources)} expected"]}
    want, got = _state(s_outer, ""), _state(n_outer, "")
    for j, idx in enumerate(sources):
        want |= _merged([_state(s_blocks[i], f"{j}/") for i in idx])
        got |= _state(n_blocks[j], f"{j}/")
    lost: dict[str, list[str]] = {}
    for (kind, where), value in want.items():
        gone = kind == "dtype" and ("buffers", where) in want and ("buffers", where) not in got
        if got.get((kind, where)) != value and not gone:  # a buffer gone is counted once
            lost.setdefault(kind, []).append(where)
    return lost


def roundtrip_logits(name: str) -> float:
    """Max |logits| difference between a hand-prepared bf16 model S at the coarse size and
    coalesce(decoalesce(S, like=M)) (M: the prepared model at full size): the round trip gives
    S's parameters back bit for bit, so anything but 0 is a buffer or dtype the operators
    changed (the bf16 llama's rotary inv_freq re-made in fp32 moved them by 3.9e-3)."""
    fam = FAMILIES[name]
    big = prepared(name)
    small = prepared(name, fam.coarser(prepared_size(name)))
    back = ML.coalesce(ML.decoalesce(small, like=big))
    x = _example(name)
    x = x.to(torch.bfloat16) if x.is_floating_point() else x
    with torch.no_grad():
        return float((logits(fam, back, x).float() - logits(fam, small, x).float()).abs().max())


def inheritance() -> list[list[str]]:
    """Rows: family, then per operator (OPS) "ok" or what the operator's result lost of what it
    should inherit from the hand-prepared model (`prepared`; "n/a" where the operator does
    not apply), then the bf16 round trip's logit difference (`roundtrip_logits`)."""
    rows = []
    for name, fam in FAMILIES.items():
        row = [name]
        for op in OPS:
            if op in ("restrict", "prolongate") and not fam.layout.euler_blocks:
                row.append("n/a")
                continue
            model = prepared(name)
            n = len(get_path(model, fam.layout.blocks))
            lost = inheritance_lost(model, _after(op, model), expected_sources(op, n))
            row.append("ok" if not lost else "lost " + ", ".join(
                f"{kind} ({len(where)})" for kind, where in sorted(lost.items())))
        diff = roundtrip_logits(name)
        row.append("exact" if diff == 0 else f"{diff:.1e}")
        rows.append(row)
    return rows


INHERITANCE_HEADERS = ["family", *OPS, "bf16 logits, coalesce(decoalesce(S)) - S"]
INHERITANCE_NOTE = (
    "What each operator's result lost of what it inherits (suite/operators/inherit.py: "
    "requires_grad, dtype, training mode per sub-module, buffers) from a model prepared by hand "
    "(checks.prepared: bf16, parameters frozen in blocks 0 and 1 and outside them, sub-modules in "
    "eval while the model trains, buffers registered on the model and on blocks); the count is "
    "of places. Last column: max |logit difference| of a bf16 model S and "
    "coalesce(decoalesce(S, like=M)), whose parameters are S's bit for bit.")
