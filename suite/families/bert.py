"""BERT for masked LM (transformers BertForMaskedLM): paper 1's BERT-Base and BERT-Large rows."""

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

SIZES = {"hidden": "hidden_size", "layers": "num_hidden_layers", "heads": "num_attention_heads",
         "ffn": "intermediate_size"}


def build(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(
        vocab_size=inp.vocab_size, hidden_size=size["hidden"], num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"], intermediate_size=size["ffn"],
        max_position_embeddings=inp.seq_len, type_vocab_size=2, initializer_range=0.02,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager" if eager else "sdpa",
    )
    return BertForMaskedLM(cfg)


def describe(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    c = m.config
    size = {"hidden": c.hidden_size, "layers": c.num_hidden_layers,
            "heads": c.num_attention_heads, "ffn": c.intermediate_size}
    return size, Inputs(seq_len=c.max_position_embeddings, vocab_size=c.vocab_size), \
        c._attn_implementation == "eager"


def settings(m: nn.Module) -> dict[str, Any]:
    return hf_settings(m, tuple(SIZES.values()))


# torch Linear stores (out, in)
BLOCK = (
    (r"attention\.self\.(query|key|value)\.weight", ("d", "d_in")),
    (r"attention\.self\.(query|key|value)\.bias", ("d",)),
    (r"(attention\.output|output)\.dense\.bias", ("d",)),
    (r"attention\.output\.dense\.weight", ("d", "d_in")),
    (r"intermediate\.dense\.weight", ("f", "d_in")),
    (r"intermediate\.dense\.bias", ("f",)),
    (r"output\.dense\.weight", ("d", "f_in")),
    LN_RULE,
)
OUTER = (
    (r"bert\.embeddings\.(word|position|token_type)_embeddings\.weight", (None, "e")),
    (r"bert\.embeddings\.LayerNorm\.(weight|bias)", ("d",)),
    (r"cls\.predictions\.transform\.dense\.weight", ("d", "d_in")),
    (r"cls\.predictions\.transform\.(dense\.bias|LayerNorm\.weight|LayerNorm\.bias)", ("d",)),
    (r"cls\.predictions\.(decoder\.)?bias", (None,)),
)

FAMILY = Family(
    name="bert", task="masked-lm", data_kind="text", size_keys=TRANSFORMER,
    optional={"ffn": 0},
    layout=Layout(blocks="bert.encoder.layer", block_axes=BLOCK, outer_axes=OUTER,
                  tied_head=True, head_norm="cls.predictions.transform.LayerNorm"),
    builder=build, describe=describe, resize=resize_hf(SIZES),
    model_class=hf_class("BertForMaskedLM"), settings=settings, config_keys=SIZES,
    customised=hf_customised({"hidden_act": "relu", "layer_norm_eps": 1e-5,
                              "hidden_dropout_prob": 0.1}),
)
