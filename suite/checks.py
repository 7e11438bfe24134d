"""Cheap exact-numerics checks of the operators on random models of every family, as a table:
`python -m suite check-operators`. The tests assert the same identities; this prints the
figures (max relative error) for a report or a closing note."""

from __future__ import annotations

import torch

from suite import multilevel as ML
from suite.families import FAMILIES, Inputs, logits

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
    size = {"hidden": hidden, "layers": layers, "heads": heads}
    rows = []
    for name, fam in FAMILIES.items():
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
