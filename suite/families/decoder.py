"""Paper 2's decoder (ours): pre-LN blocks whose residual branch can take the doubled ODE step."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from suite.families.base import (
    CUSTOMISED,
    CUSTOMISED_TEXT,
    LN_RULE,
    TRANSFORMER,
    Family,
    Inputs,
    Layout,
)


class DecoderBlock(nn.Module):
    """Pre-LN block x + s*Attn(LN(x)), then x + s*MLP(LN(x)): one forward-Euler step of size s."""

    def __init__(self, hidden: int, heads: int, ffn: int, eager: bool) -> None:
        super().__init__()
        self.heads, self.eager = heads, eager
        self.ln_1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln_2 = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, ffn)
        self.fc_out = nn.Linear(ffn, hidden)
        self.residual_scale = 1.0  # the ODE step; a coarse level may use 2

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.eager:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.residual_scale * self.attention(self.ln_1(x))
        return x + self.residual_scale * self.fc_out(F.gelu(self.fc(self.ln_2(x))))


class PlainDecoder(nn.Module):
    """Paper 2's decoder: token + learned position embedding, pre-LN blocks, final LN, tied head.

    GPT-2 has the same shape, but its blocks cannot scale their residual branch (the
    `coarse_step = 2` reading of the ODE), so paper 2 gets this small, explicit model."""

    def __init__(self, vocab: int, seq_len: int, hidden: int, layers: int, heads: int, ffn: int,
                 eager: bool = False) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(seq_len, hidden)
        self.blocks = nn.ModuleList(DecoderBlock(hidden, heads, ffn, eager) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)
        self.head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def build(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    return PlainDecoder(inp.vocab_size, inp.seq_len, size["hidden"], size["layers"],
                        size["heads"], size["ffn"], eager)


def describe(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    b = m.blocks[0]
    size = {"hidden": m.wte.embedding_dim, "layers": len(m.blocks), "heads": b.heads,
            "ffn": b.fc.out_features}
    return size, Inputs(seq_len=m.wpe.num_embeddings, vocab_size=m.wte.num_embeddings), b.eager


def settings(m: nn.Module) -> dict[str, Any]:
    return {"eager": m.blocks[0].eager, "vocab": m.wte.num_embeddings,
            "seq_len": m.wpe.num_embeddings, "tied_head": m.head.weight is m.wte.weight,
            "residual_scale": [b.residual_scale for b in m.blocks][:1]}


def resize(m: nn.Module, size: dict[str, int]) -> nn.Module:
    """A decoder of `size` with `m`'s settings, the ODE step of its first block included."""
    _, inputs, eager = describe(m)
    new = build(size, inputs, eager)
    for blk in new.blocks:
        blk.residual_scale = m.blocks[0].residual_scale
    return new


BLOCK = (  # torch Linear layout, fused qkv
    (r"qkv\.weight", ("3d", "d_in")),
    (r"qkv\.bias", ("3d",)),
    (r"proj\.weight", ("d", "d_in")),
    (r"proj\.bias|fc_out\.bias", ("d",)),
    (r"fc\.weight", ("f", "d_in")),
    (r"fc\.bias", ("f",)),
    (r"fc_out\.weight", ("d", "f_in")),
    LN_RULE,
)
OUTER = (
    (r"(wte|wpe)\.weight", (None, "e")),
    (r"ln_f\.(weight|bias)", ("d",)),
)


def customised(fam: Family) -> nn.Module:
    """A decoder whose blocks take forward-Euler steps of 2 (the suite builds 1)."""
    model = fam.build(CUSTOMISED, CUSTOMISED_TEXT, True)
    for blk in model.blocks:
        blk.residual_scale = 2.0
    return model


FAMILY = Family(
    name="decoder", task="causal-lm", data_kind="text", size_keys=TRANSFORMER,
    optional={"ffn": 0},
    layout=Layout(blocks="blocks", block_axes=BLOCK, outer_axes=OUTER, tied_head=True,
                  head_norm="ln_f", euler_blocks=True, residual_scale=True),
    builder=build, describe=describe, resize=resize, model_class=lambda: PlainDecoder,
    settings=settings, customised=customised,
)
