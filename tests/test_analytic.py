"""The analytic model against independent figures: hand derivations written out here, the papers'
statements and timm's published fvcore counts (published.md)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vitcost
from vitcost.analytic.cost import Cost
from vitcost.analytic.estimate import walk
from vitcost.errors import SpecError, VitcostError
from vitcost.specs import PixelSpec, SwinSpec, ViTSpec
from vitcost.zoo import PRESETS, get_preset

GIB = 2**30


def test_igpt_l_attention_matrices_at_128_are_768_gib():
    # Image GPT-L: 48 layers, 16 heads; R=128 -> 16,384 pixel tokens; one fp32 score per pair.
    tokens = 128 * 128
    elems = tokens * tokens * 16 * 48
    assert elems == 206_158_430_208
    e = vitcost.estimate("igpt_l", res=128, dtype="fp32")
    assert e.attn_matrix_elems == elems
    assert e.attn_matrix_bytes == 824_633_720_832 == 768 * GIB
    assert e.attn_matrix_peak_bytes == 768 * GIB // 48  # one layer's scores at a time


def test_vit_patches_vs_pixels_at_224():
    vit = vitcost.estimate("vit_b16", res=224)
    pix = vitcost.estimate(PixelSpec(dim=768, depth=12, heads=12), res=224)
    assert vit.tokens == (224 // 16) ** 2 == 196
    assert pix.tokens == 224 * 224 == 50_176
    assert pix.tokens // vit.tokens == 256
    assert pix.tokens**2 // vit.tokens**2 == 65_536  # attention pairs
    # Same dims and depth: the score matrices differ by the pair ratio (ViT adds its class token).
    assert pix.attn_matrix_elems == 12 * 12 * 50_176**2
    assert vit.attn_matrix_elems == 12 * 12 * 197**2


def test_vit_b16_fvcore_count_by_hand():
    n, d, depth, classes = 197, 768, 12, 1000
    ln = 5 * n * d  # fvcore: 5 per element of an affine LayerNorm
    block = ln + n * d * 3 * d + 2 * n * n * d + n * d * d + ln + 2 * n * d * 4 * d
    patch_embed = 196 * d * 3 * 16 * 16
    total = patch_embed + depth * block + ln + d * classes
    assert total == 17_582_740_224
    assert vitcost.estimate("vit_b16", 224).count("fvcore") == total
    assert vitcost.estimate("vit_b16", 224).count("torch") == 2 * (total - (2 * depth + 1) * ln)


def test_swin_t_fvcore_count_by_hand():
    """Swin-T at 224: stage grids 56, 28, 14, 7 with window 7 (the last stage is one window)."""
    total = 3136 * 96 * 48 + 5 * 3136 * 96  # patch embed conv + its norm
    c, depths = 96, (2, 2, 6, 2)
    for s, (grid, depth) in enumerate(zip((56, 28, 14, 7), depths)):
        n = grid * grid
        if s:
            total += 5 * n * 4 * (c // 2) + n * 4 * (c // 2) * c  # merging: norm(4C) + linear 4C -> 2C
        windows, wt = n // 49, 49
        block = (2 * 5 * n * c + n * c * 3 * c + 2 * windows * wt * wt * c + n * c * c + 2 * n * c * 4 * c)
        total += depth * block
        c *= 2
    c //= 2
    total += 5 * 49 * c + c * 1000  # final norm + head
    assert total == 4_509_194_496
    assert vitcost.estimate("swin_t", 224).count("fvcore") == total


def test_swin_pads_the_grid_to_a_multiple_of_the_window():
    e = vitcost.estimate("swin_t", res=320)
    layers = e.by_layer("macs")
    # Stage 0: 80x80 grid padded to 84x84 for 7x7 windows; qkv runs on the padded grid.
    assert layers["layers.0.blocks.0.attn.qkv"] == 84 * 84 * 96 * 3 * 96
    # ...but the MLP runs on the 80x80 unpadded tokens.
    assert layers["layers.0.blocks.0.mlp.fc1"] == 80 * 80 * 96 * 384
    # Scores: (84/7)^2 windows x 3 heads x 49 x 49 x 32, twice (QK^T and AV).
    assert layers["layers.0.blocks.0.attn"] == 2 * 144 * 3 * 49 * 49 * 32
    # Stage 3: 10x10 grid -> padded to 14x14, 4 windows.
    assert layers["layers.3.blocks.0.attn.qkv"] == 14 * 14 * 768 * 3 * 768


def test_swin_uses_the_grid_as_window_when_the_grid_is_smaller():
    # Swin-B/384 has window 12 but stage 3 at 384 is a 12x12 grid; at 224 it is 7x7 -> one 7x7 window.
    e = vitcost.estimate("swin_b_384", res=224)
    ops = {op.path: op for op in e.ops if op.kind == "param"}
    assert ops["layers.3.blocks.0.attn.relative_position_bias_table"].cost.params == 13 * 13 * 32
    assert ops["layers.0.blocks.0.attn.relative_position_bias_table"].cost.params == 23 * 23 * 4


def test_mvitv2_t_first_block_by_hand():
    """Stage 0 of MViTv2-T at 224: 56x56 tokens, width 96, 1 head; Q pooled with stride 1, K/V with
    stride 4 -> 14x14; decomposed relative positions along h and w."""
    layers = vitcost.estimate("mvitv2_t", 224).by_layer("macs")
    p = "stages.0.blocks.0"
    assert layers["patch_embed.proj"] == 56 * 56 * 96 * 3 * 7 * 7
    assert layers[f"{p}.attn.qkv"] == 3136 * 96 * 288
    assert layers[f"{p}.attn.pool_q"] == 56 * 56 * 96 * 9  # depthwise 3x3, stride 1
    assert layers[f"{p}.attn.pool_k"] == 14 * 14 * 96 * 9  # stride 4: floor((56 + 2 - 3) / 4) + 1 = 14
    nq, nk = 3136, 196
    rel = 3136 * 14 * 96 * 2  # q [56, 56, 96] against Rh [56, 14, 96] and Rw [56, 14, 96]
    assert layers[f"{p}.attn"] == 2 * nq * nk * 96 + rel
    # Stage 1 starts with Q stride 2 and a width change 96 -> 192 (shortcut projected).
    assert layers["stages.1.blocks.0.shortcut_proj_attn"] == 3136 * 96 * 192
    assert layers["stages.1.blocks.0.attn.pool_q"] == 2 * 28 * 28 * 96 * 9  # 2 heads of 96


def test_mixer_params_follow_the_resolution():
    def token_mlp_params(n: int, ds: int = 384) -> int:
        return 2 * n * ds + n + ds

    p224 = vitcost.estimate("mixer_b16", 224).params
    p448 = vitcost.estimate("mixer_b16", 448).params
    assert p448 - p224 == 12 * (token_mlp_params(784) - token_mlp_params(196))


def test_presets_match_published_params_and_macs(published):
    """Params and fvcore-convention GMACs within 0.5% of timm's / the papers' figures.

    Known differences, all within tolerance: ViT-H/14's published count omits the 1000-class head
    (1.28M params, +0.20% here); the rest differ by rounding of the published figures."""
    for name, res, params_m, gmacs in published:
        e = vitcost.estimate(name, res)
        assert abs(e.params / 1e6 / params_m - 1) < 0.005, (name, e.params, params_m)
        assert abs(e.count("fvcore") / 1e9 / gmacs - 1) < 0.005, (name, e.count("fvcore"), gmacs)


def test_conventions_project_the_same_costs():
    e = vitcost.estimate("swin_t", 224)
    t = e.total
    assert e.count("macs") == t.macs
    assert e.count("torch") == 2 * t.macs
    assert e.count("fvcore") == t.macs + 5 * t.norm
    assert e.count("flops") > 2 * t.macs  # softmax, GELU, norms and adds on top
    assert sum(e.breakdown("macs").values()) == t.macs
    assert sum(e.by_layer("fvcore").values()) == e.count("fvcore")


def test_batch_scales_costs_but_not_params():
    one, four = vitcost.estimate("mvitv2_t", 224, batch=1), vitcost.estimate("mvitv2_t", 224, batch=4)
    assert four.macs == 4 * one.macs and four.attn_matrix_elems == 4 * one.attn_matrix_elems
    assert four.params == one.params


def test_dtype_sets_bytes():
    assert vitcost.estimate("vit_b16", 224, dtype="bf16").attn_matrix_bytes * 2 == \
        vitcost.estimate("vit_b16", 224, dtype="fp32").attn_matrix_bytes


def test_non_square_resolution():
    e = vitcost.estimate("vit_b16", "224x448")
    assert e.tokens == 14 * 28 and e.res == (224, 448)


@pytest.mark.parametrize("res", [0, -3, "abc", "12x", (1, 2, 3), True, 2.5])
def test_bad_resolutions(res):
    with pytest.raises(SpecError):
        vitcost.estimate("vit_b16", res)


def test_bad_specs_and_inputs():
    with pytest.raises(SpecError, match="divisible"):
        ViTSpec(dim=100, depth=1, heads=3)
    with pytest.raises(SpecError, match="positive"):
        SwinSpec(embed_dim=96, depths=(2, 0), heads=(3, 6))
    with pytest.raises(SpecError, match="does not fit"):
        vitcost.estimate("vit_b16", 8)
    with pytest.raises(SpecError, match="larger than"):
        vitcost.estimate("swin_t:window=64", 224)
    with pytest.raises(SpecError, match="batch"):
        vitcost.estimate("vit_b16", 224, batch=0)
    with pytest.raises(VitcostError, match="vit_b16"):
        get_preset("vit_b61")


def test_every_preset_walks_with_unique_ordered_paths():
    for name, p in PRESETS.items():
        ops = walk(p.spec, *p.size, 1, p.size.frames)
        assert ops and all(op.cost.macs >= 0 for op in ops), name
        assert {op.path for op in ops if op.kind == "param"}.isdisjoint(
            {op.path for op in ops if op.kind == "linear"}), name


def test_library_compare_returns_a_dataframe():
    df = vitcost.compare(["vit_b16", "mixer"], res=[224, "448"])
    assert list(df["model"]) == ["vit_b16", "vit_b16", "mixer_s16", "mixer_s16", "mixer_b16", "mixer_b16",
                                 "mixer_l16", "mixer_l16"]
    for col in ("model", "family", "res", "batch", "dtype", "tokens", "params", "macs", "flops",
                "attn_matrix_elems", "attn_matrix_bytes", "attn_matrix_peak_bytes", "complexity", "growth"):
        assert col in df.columns
    vit = df[df.model == "vit_b16"]
    # ViT attention: 4x the tokens -> 16x the score pairs; everything else 4x: growth between 4 and 16.
    assert 4 < vit.growth.iloc[1] < 16


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 4), heads=st.integers(1, 4), nq=st.integers(1, 64), nk=st.integers(1, 64),
       d=st.integers(1, 16), terms=st.integers(0, 2), rel=st.booleans(), residual=st.booleans())
def test_attention_record_cost_is_the_sum_of_its_steps(b, heads, nq, nk, d, terms, rel, residual):
    """The attention record's closed-form cost equals its parts, step by step (Vaswani et al. 2017):
    q k^T and scores @ v each B*h*Nq*Nkv*d MACs, one softmax per score, a scale per query element."""
    from vitcost.analytic.trace import Trace, attention_steps

    grids = (nq, 1, nk, 1) if rel else ()
    t = Trace(b)
    t.attention("attn", b, heads, nq, nk, d, terms=terms, rel=grids, residual=residual)
    (op,) = t.ops
    assert op.cost == Cost.sum(s.cost for s in attention_steps(op.call))
    assert op.cost.macs == 2 * b * heads * nq * nk * d + (b * heads * nq * (nk + 1) * d if rel else 0)
    assert op.cost.softmax == op.cost.attn == b * heads * nq * nk


def test_positional_cost_records_match_their_keyword_form():
    """Trace builds the frequent ops' Cost positionally for speed; they must equal the keyword form
    (this fails if Cost's fields are reordered or one is inserted before `bn`)."""
    from vitcost.analytic.trace import Trace

    t = Trace(2)
    t.linear("fc", 6, 4, 5, role="mlp")
    t.linear("fc_nb", 6, 4, 5, role="mlp", bias=False)
    t.norm("ln", 6, 4)
    t.eltwise("add", 24)
    assert [op.cost for op in t.ops] == [Cost(macs=6 * 4 * 5, eltwise=30, params=4 * 5 + 5),
                                         Cost(macs=6 * 4 * 5, params=4 * 5), Cost(norm=24, params=8),
                                         Cost(eltwise=24)]
