"""Model families: random-initialised builders and a uniform description of where things live.

Each family maps a small size table (hidden, layers, heads, ...) to a model and says where its
embeddings, residual blocks, final norm and head are (`Layout`), so that the multilevel operators
can be written once against the layout instead of once per family. Imports nothing of ours.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub call hangs for a minute offline

TASKS = ("causal-lm", "masked-lm", "classify")


@dataclass(frozen=True)
class Layout:
    """Where a family keeps its parts, as attribute paths from the model root."""

    blocks: str  # nn.ModuleList of residual blocks, in order
    embeddings: tuple[str, ...]  # modules/parameters that map inputs to the residual stream
    final_norm: str | None
    head: str  # module producing logits
    tied_head: bool  # output projection shares the word-embedding matrix


@dataclass(frozen=True)
class Inputs:
    """What the data gives a family to size itself: a vocabulary or an image shape."""

    seq_len: int = 0
    vocab_size: int = 0
    image_size: int = 0
    channels: int = 0
    num_classes: int = 0


@dataclass(frozen=True)
class Family:
    name: str
    task: str
    data_kind: str  # "text" or "images"
    size_keys: dict[str, str]  # key -> meaning; every key is a positive int
    optional: dict[str, int] = field(default_factory=dict)
    layout: Layout | None = None
    builder: Callable[[dict[str, int], Inputs, bool], nn.Module] | None = None

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
        return errs

    def build(self, size: dict[str, int], inputs: Inputs,
              eager_attention: bool = False) -> nn.Module:
        """A random-initialised model. `eager_attention` selects the math attention path that
        fvcore can count (it counts the fused kernel as zero)."""
        assert self.builder is not None
        return self.builder({**self.optional, **size}, inputs, eager_attention)


def _ffn(size: dict[str, int]) -> int:
    return size.get("ffn") or 4 * size["hidden"]


def _build_bert(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(
        vocab_size=inp.vocab_size, hidden_size=size["hidden"], num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"], intermediate_size=_ffn(size),
        max_position_embeddings=inp.seq_len, type_vocab_size=2, initializer_range=0.02,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager" if eager else "sdpa",
    )
    return BertForMaskedLM(cfg)


def _build_gpt2(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=inp.vocab_size, n_embd=size["hidden"], n_layer=size["layers"],
        n_head=size["heads"], n_inner=_ffn(size), n_positions=inp.seq_len, initializer_range=0.02,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
        attn_implementation="eager" if eager else "sdpa",
    )
    return GPT2LMHeadModel(cfg)


def _build_vit(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=inp.image_size, patch_size=size["patch"], in_chans=inp.channels,
        num_classes=inp.num_classes, embed_dim=size["hidden"], depth=size["layers"],
        num_heads=size["heads"], mlp_ratio=_ffn(size) / size["hidden"],
    )
    if eager:
        for blk in model.blocks:
            blk.attn.fused_attn = False
    return model


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


def _build_decoder(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    return PlainDecoder(inp.vocab_size, inp.seq_len, size["hidden"], size["layers"],
                        size["heads"], _ffn(size), eager)


_TRANSFORMER = {"hidden": "residual width", "layers": "blocks", "heads": "attention heads"}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("bert", "masked-lm", "text", _TRANSFORMER, {"ffn": 0},
               Layout("bert.encoder.layer", ("bert.embeddings",), None, "cls", True), _build_bert),
        Family("gpt2", "causal-lm", "text", _TRANSFORMER, {"ffn": 0},
               Layout("transformer.h", ("transformer.wte", "transformer.wpe"), "transformer.ln_f",
                      "lm_head", True), _build_gpt2),
        Family("vit", "classify", "images", {**_TRANSFORMER, "patch": "patch side in pixels"},
               {"ffn": 0},
               Layout("blocks", ("patch_embed", "cls_token", "pos_embed"), "norm", "head", False),
               _build_vit),
        Family("decoder", "causal-lm", "text", _TRANSFORMER, {"ffn": 0},
               Layout("blocks", ("wte", "wpe"), "ln_f", "head", True), _build_decoder),
    ]
}


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
