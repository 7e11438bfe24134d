"""Cheap exact-numerics checks of the operators on random models of every family, as a table:
`python -m suite check-operators`. The tests assert the same identities; this prints the
figures (max relative error) for a report or a closing note."""

from __future__ import annotations

import copy

import torch

from suite import operators as ML
from suite.families import FAMILIES, Inputs, family_of, logits

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
