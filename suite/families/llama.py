"""A Llama-style decoder (transformers LlamaForCausalLM, random-initialised from a config):
RMSNorm, SwiGLU, rotary positions, grouped-query attention, an untied head.

Width coalescing pairs query heads i and i + H/2 and key/value heads j and j + KV/2 (both are
halves of their projection's output axis), so H/KV is kept and query head i still reads key/value
head i // (H/KV); the head size is kept, so rotary positions are unchanged. SwiGLU's gate and up
outputs are averaged and the down projection's inputs summed; RMSNorm weights are averaged.
Width de-coalescing preserves the logits exactly: duplicating a vector keeps its root mean
square, so RMSNorm of [x, x] is [RMSNorm(x), RMSNorm(x)], and every other layer sees its inputs
duplicated and its input weights halved (tests/test_llama.py checks it)."""

from __future__ import annotations

from typing import Any

from torch import nn

from suite.families.base import (
    TRANSFORMER,
    Family,
    Inputs,
    Layout,
    hf_class,
    hf_customised,
    hf_settings,
    resize_hf,
)

SIZES = {"hidden": "hidden_size", "layers": "num_hidden_layers", "heads": "num_attention_heads",
         "kv_heads": "num_key_value_heads", "ffn": "intermediate_size"}


def ffn_default(hidden: int) -> int:
    """Llama's SwiGLU width: 8/3 of the residual width, rounded up to a multiple of 8 (even,
    so that it halves)."""
    return -(-8 * hidden // 3 // 8) * 8


def build(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=inp.vocab_size, hidden_size=size["hidden"],
        intermediate_size=size["ffn"],
        num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
        num_key_value_heads=size.get("kv_heads") or size["heads"],
        max_position_embeddings=inp.seq_len, initializer_range=0.02, rms_norm_eps=1e-6,
        tie_word_embeddings=False, attention_dropout=0.0, use_cache=False,
        bos_token_id=None, eos_token_id=None,
        attn_implementation="eager" if eager else "sdpa",
    )
    return LlamaForCausalLM(cfg)


def describe(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    c = m.config
    size = {"hidden": c.hidden_size, "layers": c.num_hidden_layers,
            "heads": c.num_attention_heads, "kv_heads": c.num_key_value_heads,
            "ffn": c.intermediate_size}
    return size, Inputs(seq_len=c.max_position_embeddings, vocab_size=c.vocab_size), \
        c._attn_implementation == "eager"


def settings(m: nn.Module) -> dict[str, Any]:
    return hf_settings(m, tuple(SIZES.values()))


def check(size: dict[str, int]) -> list[tuple[str, str]]:
    """Grouped-query attention: the key/value heads divide the query heads; rotary positions
    rotate pairs of a head's channels, so the head size (hidden / heads) is even."""
    errs = []
    kv = size.get("kv_heads") or size["heads"]
    if size["heads"] % kv:
        errs.append(("kv_heads", f"heads={size['heads']} is not divisible by kv_heads={kv}"))
    head = size["hidden"] // size["heads"]
    if head % 2:
        errs.append(("heads", f"head size hidden/heads = {size['hidden']}/{size['heads']} = "
                              f"{head} is odd; rotary positions need an even head size"))
    return errs


BLOCK = (  # torch Linear layout (out, in)
    (r"self_attn\.(q_proj|o_proj)\.weight", ("d", "d_in")),
    (r"self_attn\.(k_proj|v_proj)\.weight", ("kv", "d_in")),  # KV heads: halves pair like heads
    (r"self_attn\.(q_proj|o_proj)\.bias", ("d",)),
    (r"self_attn\.(k_proj|v_proj)\.bias", ("kv",)),
    (r"mlp\.(gate_proj|up_proj)\.weight", ("f", "d_in")),
    (r"mlp\.(gate_proj|up_proj)\.bias", ("f",)),
    (r"mlp\.down_proj\.weight", ("d", "f_in")),
    (r"mlp\.down_proj\.bias", ("d",)),
    (r"(input_layernorm|post_attention_layernorm)\.weight", ("d",)),
)
OUTER = (
    (r"model\.embed_tokens\.weight", (None, "e")),
    (r"model\.norm\.weight", ("d",)),
    (r"lm_head\.weight", (None, "d_in")),  # untied: sums its inputs, like ViT's head
)

FAMILY = Family(
    name="llama", task="causal-lm", data_kind="text", size_keys=TRANSFORMER,
    optional={"ffn": 0, "kv_heads": 0},
    layout=Layout(blocks="model.layers", block_axes=BLOCK, outer_axes=OUTER, tied_head=False,
                  head_norm=None, euler_blocks=True),
    builder=build, describe=describe, resize=resize_hf(SIZES),
    model_class=hf_class("LlamaForCausalLM"), settings=settings, width_keys=("kv_heads",),
    extra_check=check, config_keys=SIZES, default_ffn=ffn_default,
    customised=hf_customised({"hidden_act": "gelu", "rms_norm_eps": 1e-5,
                              "attention_bias": True, "mlp_bias": True,
                              "num_key_value_heads": 2}),
)
