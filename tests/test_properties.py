"""Invariants, checked on many resolutions with hypothesis: costs are monotone in resolution,
window attention is linear in H*W at a fixed window, global attention quadratic."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

import vitcost
from vitcost.zoo import get_preset

FAST = settings(max_examples=40, deadline=None)
MODELS = ["vit_s16", "swin_t", "mvitv2_t", "mixer_s16", "igpt_s"]


def _scores(e: vitcost.Estimate) -> int:
    """MACs of the attention core (QK^T and AV) of every layer."""
    return sum(op.cost.macs for op in e.ops if op.role == "scores")


@FAST
@given(st.sampled_from(MODELS), st.integers(64, 640), st.integers(1, 64), st.integers(64, 640))
def test_costs_are_monotone_in_resolution(model, h, dh, w):
    if model == "igpt_s":
        h, w = h // 8, w // 8  # pixel attention: keep the token count small
    small, big = vitcost.estimate(model, (h, w)), vitcost.estimate(model, (h + dh, w))
    for conv in ("macs", "flops", "fvcore", "torch"):
        assert big.count(conv) >= small.count(conv), conv
    assert big.attn_matrix_elems >= small.attn_matrix_elems
    assert big.params >= small.params


@FAST
@given(st.integers(1, 6), st.integers(1, 6))
def test_window_attention_core_is_linear_in_hw_when_windows_tile(a, b):
    """At sizes where every stage's grid is a multiple of the window (224 = 4 * 7 * 2^3), the
    scores cost exactly a*b times the cost at 224x224."""
    base = _scores(vitcost.estimate("swin_t", 224))
    assert _scores(vitcost.estimate("swin_t", (224 * a, 224 * b))) == a * b * base


@FAST
@given(st.integers(224, 2000), st.integers(224, 2000))
def test_window_attention_core_is_linear_in_hw_up_to_padding(h, w):
    """Any size: the scores cost lies between the unpadded and the fully padded window count.
    Per stage s (grid g_s = H/2^(s+2), width C_s, window M): M^2 * C_s * 2 MACs per token."""
    e = vitcost.estimate("swin_t", (h, w))
    spec = get_preset("swin_t").spec
    per_token = sum(2 * 49 * spec.stage_dim(s) * d / 4 ** (s + 2) for s, d in enumerate(spec.depths))
    lower = per_token * (h // 4 * 4) * (w // 4 * 4)  # the patch embedding floors the grid to whole 4x4 patches
    upper = per_token * (h + 4 * 8 * 7) * (w + 4 * 8 * 7)  # padding adds < one window per stage axis
    assert lower * 0.98 <= _scores(e) <= upper


@FAST
@given(st.integers(1, 20), st.integers(1, 20), st.integers(2, 4))
def test_vit_attention_core_grows_as_hw_squared(gh, gw, k):
    spec = replace(get_preset("vit_s16").spec, class_tokens=0)
    small = _scores(vitcost.estimate(spec, (16 * gh, 16 * gw)))
    big = _scores(vitcost.estimate(spec, (16 * gh * k, 16 * gw * k)))
    assert big == k**4 * small  # (H*W) grows k^2, so pairs grow k^4
    assert small == 2 * spec.depth * (gh * gw) ** 2 * spec.dim


@FAST
@given(st.integers(16, 200))
def test_mixer_token_mixing_is_linear_in_tokens(g):
    spec = get_preset("mixer_s16").spec
    e = vitcost.estimate("mixer_s16", 16 * g)
    token_mixing = sum(v for k, v in e.by_layer("macs").items() if ".mlp_tokens." in k)
    assert token_mixing == spec.depth * 2 * spec.dim * g * g * spec.tokens_hidden
