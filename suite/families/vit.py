"""Vision transformers (timm VisionTransformer): paper 1's DeiT-B row.

timm keeps no record of how a model was built, so `settings` reads every constructor setting back
from the instance (activation, norm and its eps, block, MLP and attention classes, dropouts and
the stochastic-depth rate, dynamic image size, tokens, pooling, layer scale, q/k norms) and
`resize` builds the new size with all of them: an operator keeps everything about a model but
its shape (issue 14: a rebuilt ViT lost act_layer, dynamic_img_size and DropPath)."""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from suite.families.base import CUSTOMISED, LN_RULE, TRANSFORMER, Family, Inputs, Layout


def _vit() -> type:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


def build(size: dict[str, int], inp: Inputs, eager: bool) -> nn.Module:
    model = _vit()(
        img_size=inp.image_size, patch_size=size["patch"], in_chans=inp.channels,
        num_classes=inp.num_classes, embed_dim=size["hidden"], depth=size["layers"],
        num_heads=size["heads"], mlp_ratio=size["ffn"] / size["hidden"],
    )
    if eager:
        for blk in model.blocks:
            blk.attn.fused_attn = False
    return model


def describe(m: nn.Module) -> tuple[dict[str, int], Inputs, bool]:
    pe = m.patch_embed
    size = {"hidden": m.embed_dim, "layers": len(m.blocks), "heads": m.blocks[0].attn.num_heads,
            "patch": pe.patch_size[0], "ffn": m.blocks[0].mlp.fc1.out_features}
    inputs = Inputs(image_size=pe.img_size[0], channels=pe.proj.in_channels,
                    num_classes=m.num_classes)
    return size, inputs, not m.blocks[0].attn.fused_attn


def _p(module: nn.Module) -> float:
    """A dropout module's probability; 0 for nn.Identity (timm skips dropout it does not need)."""
    return float(getattr(module, "p", getattr(module, "prob", 0.0)))


def settings(m: nn.Module) -> dict[str, Any]:
    """Every constructor setting of a timm VisionTransformer that is not a size."""
    b = m.blocks[0]
    ident = nn.Identity
    last_dp = m.blocks[-1].drop_path1
    return {
        "img_size": tuple(m.patch_embed.img_size), "in_chans": m.patch_embed.proj.in_channels,
        "num_classes": m.num_classes, "global_pool": m.global_pool,
        "qkv_bias": b.attn.qkv.bias is not None,
        "qk_norm": not isinstance(b.attn.q_norm, ident),
        "scale_attn_norm": not isinstance(getattr(b.attn, "norm", ident()), ident),
        "scale_mlp_norm": not isinstance(getattr(b.mlp, "norm", ident()), ident),
        "proj_bias": b.attn.proj.bias is not None,
        "layer_scale": not isinstance(b.ls1, ident),
        "class_token": m.cls_token is not None, "pos_embed": m.pos_embed is not None,
        "no_embed_class": m.no_embed_class, "reg_tokens": m.num_reg_tokens,
        "pre_norm": not isinstance(m.norm_pre, ident),
        "final_norm": not (isinstance(m.norm, ident) and isinstance(m.fc_norm, ident)),
        "fc_norm": not isinstance(m.fc_norm, ident),
        "pool_include_prefix": m.pool_include_prefix,
        "dynamic_img_size": m.dynamic_img_size,
        "dynamic_img_pad": getattr(m.patch_embed, "dynamic_img_pad", False),
        "drop_rate": _p(m.head_drop), "pos_drop_rate": _p(m.pos_drop),
        "patch_drop_rate": _p(m.patch_drop), "proj_drop_rate": _p(b.attn.proj_drop),
        "attn_drop_rate": _p(b.attn.attn_drop),
        "drop_path_rate": float(getattr(last_dp, "drop_prob", 0.0)),
        "act_layer": type(b.mlp.act), "norm_layer": type(b.norm1),
        "norm_eps": float(getattr(b.norm1, "eps", 0.0)),
        "block_fn": type(b), "mlp_layer": type(b.mlp), "attn_layer": type(b.attn),
        "embed_layer": type(m.patch_embed), "fused_attn": bool(b.attn.fused_attn),
    }


def resize(m: nn.Module, size: dict[str, int]) -> nn.Module:
    """A random-initialised VisionTransformer of `size` with every setting of `m`."""
    s = settings(m)
    norm = functools.partial(s["norm_layer"], eps=s["norm_eps"])
    new = _vit()(
        img_size=s["img_size"], patch_size=size["patch"], in_chans=s["in_chans"],
        num_classes=s["num_classes"], global_pool=s["global_pool"], embed_dim=size["hidden"],
        depth=size["layers"], num_heads=size["heads"], mlp_ratio=size["ffn"] / size["hidden"],
        qkv_bias=s["qkv_bias"], qk_norm=s["qk_norm"], scale_attn_norm=s["scale_attn_norm"],
        scale_mlp_norm=s["scale_mlp_norm"], proj_bias=s["proj_bias"],
        init_values=1e-5 if s["layer_scale"] else None,  # the values are copied in afterwards
        class_token=s["class_token"], pos_embed="learn" if s["pos_embed"] else "none",
        no_embed_class=s["no_embed_class"], reg_tokens=s["reg_tokens"],
        pre_norm=s["pre_norm"], final_norm=s["final_norm"], fc_norm=s["fc_norm"],
        pool_include_prefix=s["pool_include_prefix"], dynamic_img_size=s["dynamic_img_size"],
        dynamic_img_pad=s["dynamic_img_pad"], drop_rate=s["drop_rate"],
        pos_drop_rate=s["pos_drop_rate"], patch_drop_rate=s["patch_drop_rate"],
        proj_drop_rate=s["proj_drop_rate"], attn_drop_rate=s["attn_drop_rate"],
        drop_path_rate=s["drop_path_rate"], embed_layer=s["embed_layer"], norm_layer=norm,
        act_layer=s["act_layer"], block_fn=s["block_fn"], mlp_layer=s["mlp_layer"],
        attn_layer=s["attn_layer"],
    )
    for blk in new.blocks:
        blk.attn.fused_attn = s["fused_attn"]
    return new


BLOCK = (  # timm's torch Linear layout, fused qkv
    (r"attn\.qkv\.weight", ("3d", "d_in")),
    (r"attn\.qkv\.bias", ("3d",)),
    (r"attn\.proj\.weight", ("d", "d_in")),
    (r"attn\.proj\.bias|mlp\.fc2\.bias", ("d",)),
    (r"mlp\.fc1\.weight", ("f", "d_in")),
    (r"mlp\.fc1\.bias", ("f",)),
    (r"mlp\.fc2\.weight", ("d", "f_in")),
    (r"attn\.(q_norm|k_norm)\.(weight|bias)", (None,)),  # over the head size, which is kept
    (r"mlp\.norm\.(weight|bias)", ("f",)),
    (r"ls[12]\.gamma", ("d",)),
    LN_RULE,
)
OUTER = (
    (r"cls_token|pos_embed|reg_token", (None, None, "d")),
    (r"patch_embed\.proj\.weight", ("d", None, None, None)),
    (r"patch_embed\.proj\.bias|norm\.weight|norm\.bias|norm_pre\.(weight|bias)|"
     r"fc_norm\.(weight|bias)", ("d",)),
    (r"head\.weight", (None, "d_in")),  # an untied head sums its inputs directly
    (r"head\.bias", (None,)),
)


def customised(fam: Family) -> nn.Module:
    """The issue's ViT: ReLU, dynamic image size, DropPath 0.1, 28 px, patch 7, 1 channel, 10
    classes, and timm options the suite never sets (qk norm, layer scale, a register token,
    average pooling): every one must survive each operator."""
    return _vit()(img_size=28, patch_size=7, in_chans=1, num_classes=10,
                  embed_dim=CUSTOMISED["hidden"], depth=CUSTOMISED["layers"],
                  num_heads=CUSTOMISED["heads"], act_layer=nn.ReLU, dynamic_img_size=True,
                  drop_path_rate=0.1, qk_norm=True, init_values=1e-3, reg_tokens=1,
                  global_pool="avg")


FAMILY = Family(
    name="vit", task="classify", data_kind="images",
    size_keys={**TRANSFORMER, "patch": "patch side in pixels"}, optional={"ffn": 0},
    layout=Layout(blocks="blocks", block_axes=BLOCK, outer_axes=OUTER, tied_head=False,
                  head_norm=None),
    builder=build, describe=describe, resize=resize, model_class=_vit, settings=settings,
    customised=customised,
)
