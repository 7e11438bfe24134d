"""Operators keep everything about a model but its shape (issue 14, found replaying public bug
reports: a rebuilt model lost its constructor settings). Every family, built with settings other
than the suite's, through every operator that applies to it."""

import pytest
import torch

from suite import operators as ML
from suite.checks import _after, customised, properties, settings_survival
from suite.families import FAMILIES

ROWS = settings_survival()


@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0]}-{r[1]}" for r in ROWS])
def test_every_setting_and_parameter_property_survives(row):
    family, op, kept, props, lost = row
    n, of = kept.split("/")
    assert (n, lost, props) == (of, "-", "yes"), row


def test_every_family_and_operator_is_covered():
    pairs = {(r[0], r[1]) for r in ROWS}
    for name, fam in FAMILIES.items():
        ops = {"coalesce", "decoalesce", "interpolate", "stack"} | (
            {"restrict", "prolongate"} if fam.layout.euler_blocks else set())
        assert {op for f, op in pairs if f == name} == ops


def test_the_reported_vit_keeps_relu_dynamic_size_and_drop_path():
    """The bug report: coalesce of this ViT came back with GELU, no dynamic size and no DropPath,
    and failed on a 35 x 35 input."""
    vit = customised("vit")
    small = ML.coalesce(vit)
    blk = small.blocks[-1]
    assert isinstance(blk.mlp.act, torch.nn.ReLU)
    assert small.dynamic_img_size and type(blk.drop_path1).__name__ == "DropPath"
    assert blk.drop_path1.drop_prob == pytest.approx(0.1)  # the last block keeps the rate
    with torch.no_grad():
        out = small(torch.randn(2, 1, 35, 35, dtype=torch.float64))
    assert out.shape == (2, 10)
    p = properties(small)
    assert p["cls_token"] == (torch.float64, "cpu", False)  # frozen, float64: as it was


def test_a_setting_that_changed_would_be_seen():
    """The check can fail: a model rebuilt the way the suite used to (timm's defaults but the
    sizes) loses the activation, the dynamic size and DropPath."""
    from timm.models.vision_transformer import VisionTransformer

    vit = customised("vit")
    plain = VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=10,
                              embed_dim=16, depth=2, num_heads=2)
    fam = FAMILIES["vit"]
    before, after = fam.settings(vit), fam.settings(plain)
    assert {k for k in before if before[k] != after[k]} >= {"act_layer", "dynamic_img_size",
                                                            "drop_path_rate"}
    assert _after("coalesce", vit) is not vit


def test_family_records_are_built_by_keyword():
    """Issue 22 item 3: a Family or Layout read by position is one swapped field away from a
    wrong model, so both refuse positional arguments."""
    from suite.families import Family, Layout

    with pytest.raises(TypeError):
        Family("x", "causal-lm", "text", {})
    with pytest.raises(TypeError):
        Layout("blocks", (), (), True, None)
    lay = Layout(blocks="blocks", block_axes=(), outer_axes=(), tied_head=True, head_norm=None)
    assert Family(name="x", task="causal-lm", data_kind="text", size_keys={}, layout=lay).layout \
        is lay
