"""GPT-2 (transformers GPT2LMHeadModel): paper 1's GPT-Base row."""

from __future__ import annotations

from typing import Any

from torch import nn

from suite.families.base import (
    LN_RULE,
    TRANSFORMER,
    Family,
    Inputs,
    Layout,
    hf_class,
    hf_customised,
    hf_settings,
    resize_hf,
)

SIZES = {"hidden": "n_embd", "layers": "n_layer", "heads": "n_head", "ffn": "n_inner"}


def build(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=inp.vocab_size, n_embd=size["hidden"], n_layer=size["layers"],
        n_head=size["heads"], n_inner=size["ffn"], n_positions=inp.seq_len,
        initializer_range=0.02, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=None, eos_token_id=None,
        use_cache=False,  # training only: no KV cache
        attn_implementation="eager" if eager else "sdpa",
    )
    return GPT2LMHeadModel(cfg)


def describe(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    c = m.config
    size = {"hidden": c.n_embd, "layers": c.n_layer, "heads": c.n_head,
            "ffn": c.n_inner or 4 * c.n_embd}
    return size, Inputs(seq_len=c.n_positions, vocab_size=c.vocab_size), \
        c._attn_implementation == "eager"


def settings(m: nn.Module) -> dict[str, Any]:
    return hf_settings(m, tuple(SIZES.values()))


# HF GPT-2's Conv1D stores (in, out)
BLOCK = (
    (r"attn\.c_attn\.weight", ("d_in", "3d")),
    (r"attn\.c_attn\.bias", ("3d",)),
    (r"attn\.c_proj\.weight", ("d_in", "d")),
    (r"(attn|mlp)\.c_proj\.bias", ("d",)),
    (r"mlp\.c_fc\.weight", ("d_in", "f")),
    (r"mlp\.c_fc\.bias", ("f",)),
    (r"mlp\.c_proj\.weight", ("f_in", "d")),
    LN_RULE,
)
OUTER = (
    (r"transformer\.(wte|wpe)\.weight", (None, "e")),
    (r"transformer\.ln_f\.(weight|bias)", ("d",)),
)

FAMILY = Family(
    name="gpt2", task="causal-lm", data_kind="text", size_keys=TRANSFORMER,
    optional={"ffn": 0},
    layout=Layout(blocks="transformer.h", block_axes=BLOCK, outer_axes=OUTER, tied_head=True,
                  head_norm="transformer.ln_f", euler_blocks=True),
    builder=build, describe=describe, resize=resize_hf(SIZES),
    model_class=hf_class("GPT2LMHeadModel"), settings=settings, config_keys=SIZES,
    customised=hf_customised({"activation_function": "relu", "layer_norm_epsilon": 1e-4,
                              "scale_attn_by_inverse_layer_idx": True}),
)
