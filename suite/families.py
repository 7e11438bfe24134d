"""Model families: random-initialised builders and a uniform description of where things live.

Each family maps a small size table (hidden, layers, heads, ...) to a model and says where its
embeddings, residual blocks, final norm and head are (`Layout`), so that the multilevel operators
can be written once against the layout instead of once per family. Imports nothing of ours.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
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


@dataclass(frozen=True)
class Layout:
    """Where a family keeps its parts, and what every parameter's axes mean."""

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


@dataclass(frozen=True)
class Family:
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
        use_cache=False,  # training only: no KV cache
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


def _describe_bert(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    c = m.config
    size = {"hidden": c.hidden_size, "layers": c.num_hidden_layers,
            "heads": c.num_attention_heads, "ffn": c.intermediate_size}
    return size, Inputs(seq_len=c.max_position_embeddings, vocab_size=c.vocab_size), \
        c._attn_implementation == "eager"


def _describe_gpt2(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    c = m.config
    size = {"hidden": c.n_embd, "layers": c.n_layer, "heads": c.n_head,
            "ffn": c.n_inner or 4 * c.n_embd}
    return size, Inputs(seq_len=c.n_positions, vocab_size=c.vocab_size), \
        c._attn_implementation == "eager"


def _resize_hf(keys: dict[str, str]) -> Callable[[nn.Module, dict[str, int]], nn.Module]:
    def resize(m: nn.Module, size: dict[str, int]) -> nn.Module:
        cfg = copy.deepcopy(m.config)
        for ours, theirs in keys.items():
            setattr(cfg, theirs, size[ours])
        return type(m)(cfg)

    return resize


def _describe_vit(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    pe = m.patch_embed
    size = {"hidden": m.embed_dim, "layers": len(m.blocks), "heads": m.blocks[0].attn.num_heads,
            "patch": pe.patch_size[0], "ffn": m.blocks[0].mlp.fc1.out_features}
    inputs = Inputs(image_size=pe.img_size[0], channels=pe.proj.in_channels,
                    num_classes=m.num_classes)
    return size, inputs, not m.blocks[0].attn.fused_attn


def _resize_vit(m: nn.Module, size: dict[str, int]) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    _, inputs, eager = _describe_vit(m)
    new = VisionTransformer(
        img_size=inputs.image_size, patch_size=size["patch"], in_chans=inputs.channels,
        num_classes=inputs.num_classes, embed_dim=size["hidden"], depth=size["layers"],
        num_heads=size["heads"], mlp_ratio=size["ffn"] / size["hidden"],
        qkv_bias=m.blocks[0].attn.qkv.bias is not None, class_token=m.cls_token is not None,
        global_pool=m.global_pool, no_embed_class=m.no_embed_class,
    )
    for blk in new.blocks:
        blk.attn.fused_attn = not eager
    return new


def _describe_decoder(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    b = m.blocks[0]
    size = {"hidden": m.wte.embedding_dim, "layers": len(m.blocks), "heads": b.heads,
            "ffn": b.fc.out_features}
    return size, Inputs(seq_len=m.wpe.num_embeddings, vocab_size=m.wte.num_embeddings), b.eager


def _resize_decoder(m: nn.Module, size: dict[str, int]) -> nn.Module:
    _, inputs, eager = _describe_decoder(m)
    return _build_decoder(size, inputs, eager)


def _hf(name: str) -> Callable[[], type]:
    def cls() -> type:
        import transformers

        return getattr(transformers, name)

    return cls


def _timm_vit() -> type:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


_TRANSFORMER = {"hidden": "residual width", "layers": "blocks", "heads": "attention heads"}
_LN = (r".*(LayerNorm|ln_\w+|norm\w*)\.(weight|bias)", ("d",))  # every norm inside a block
# torch Linear stores (out, in); HF GPT-2's Conv1D stores (in, out)
_BERT_BLOCK = (
    (r"attention\.self\.(query|key|value)\.weight", ("d", "d_in")),
    (r"attention\.self\.(query|key|value)\.bias", ("d",)),
    (r"(attention\.output|output)\.dense\.bias", ("d",)),
    (r"attention\.output\.dense\.weight", ("d", "d_in")),
    (r"intermediate\.dense\.weight", ("f", "d_in")),
    (r"intermediate\.dense\.bias", ("f",)),
    (r"output\.dense\.weight", ("d", "f_in")),
    _LN,
)
_BERT_OUTER = (
    (r"bert\.embeddings\.(word|position|token_type)_embeddings\.weight", (None, "e")),
    (r"bert\.embeddings\.LayerNorm\.(weight|bias)", ("d",)),
    (r"cls\.predictions\.transform\.dense\.weight", ("d", "d_in")),
    (r"cls\.predictions\.transform\.(dense\.bias|LayerNorm\.weight|LayerNorm\.bias)", ("d",)),
    (r"cls\.predictions\.(decoder\.)?bias", (None,)),
)
_GPT2_BLOCK = (
    (r"attn\.c_attn\.weight", ("d_in", "3d")),
    (r"attn\.c_attn\.bias", ("3d",)),
    (r"attn\.c_proj\.weight", ("d_in", "d")),
    (r"(attn|mlp)\.c_proj\.bias", ("d",)),
    (r"mlp\.c_fc\.weight", ("d_in", "f")),
    (r"mlp\.c_fc\.bias", ("f",)),
    (r"mlp\.c_proj\.weight", ("f_in", "d")),
    _LN,
)
_GPT2_OUTER = (
    (r"transformer\.(wte|wpe)\.weight", (None, "e")),
    (r"transformer\.ln_f\.(weight|bias)", ("d",)),
)
_TORCH_BLOCK = (  # timm ViT and the plain decoder: fused qkv, torch Linear layout
    (r"(attn\.)?qkv\.weight", ("3d", "d_in")),
    (r"(attn\.)?qkv\.bias", ("3d",)),
    (r"(attn\.)?proj\.weight", ("d", "d_in")),
    (r"(attn\.)?proj\.bias|mlp\.fc2\.bias|fc_out\.bias", ("d",)),
    (r"mlp\.fc1\.weight|fc\.weight", ("f", "d_in")),
    (r"mlp\.fc1\.bias|fc\.bias", ("f",)),
    (r"mlp\.fc2\.weight|fc_out\.weight", ("d", "f_in")),
    _LN,
)
_VIT_OUTER = (
    (r"cls_token|pos_embed", (None, None, "d")),
    (r"patch_embed\.proj\.weight", ("d", None, None, None)),
    (r"patch_embed\.proj\.bias|norm\.weight|norm\.bias", ("d",)),
    (r"head\.weight", (None, "d_in")),  # an untied head sums its inputs directly
    (r"head\.bias", (None,)),
)
_DECODER_OUTER = (
    (r"(wte|wpe)\.weight", (None, "e")),
    (r"ln_f\.(weight|bias)", ("d",)),
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("bert", "masked-lm", "text", _TRANSFORMER, {"ffn": 0},
               Layout("bert.encoder.layer", _BERT_BLOCK, _BERT_OUTER, True,
                      "cls.predictions.transform.LayerNorm"),
               _build_bert, _describe_bert,
               _resize_hf({"hidden": "hidden_size", "layers": "num_hidden_layers",
                           "heads": "num_attention_heads", "ffn": "intermediate_size"}),
               _hf("BertForMaskedLM")),
        Family("gpt2", "causal-lm", "text", _TRANSFORMER, {"ffn": 0},
               Layout("transformer.h", _GPT2_BLOCK, _GPT2_OUTER, True, "transformer.ln_f",
                      euler_blocks=True),
               _build_gpt2, _describe_gpt2,
               _resize_hf({"hidden": "n_embd", "layers": "n_layer", "heads": "n_head",
                           "ffn": "n_inner"}),
               _hf("GPT2LMHeadModel")),
        Family("vit", "classify", "images", {**_TRANSFORMER, "patch": "patch side in pixels"},
               {"ffn": 0}, Layout("blocks", _TORCH_BLOCK, _VIT_OUTER, False, None),
               _build_vit, _describe_vit, _resize_vit, _timm_vit),
        Family("decoder", "causal-lm", "text", _TRANSFORMER, {"ffn": 0},
               Layout("blocks", _TORCH_BLOCK, _DECODER_OUTER, True, "ln_f", euler_blocks=True,
                      residual_scale=True),
               _build_decoder, _describe_decoder, _resize_decoder, lambda: PlainDecoder),
    ]
}


def family_of(model: nn.Module) -> Family:
    """The family of a model instance; a clear error for anything else."""
    for fam in FAMILIES.values():
        if isinstance(model, fam.model_class()):
            return fam
    raise TypeError(f"{type(model).__name__} is not a supported family; supported: "
                    "transformers BertForMaskedLM, GPT2LMHeadModel, timm VisionTransformer, "
                    "suite.families.PlainDecoder")


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
