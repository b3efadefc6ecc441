"""The torch reference models: module paths, parameters, stock-fvcore counts per layer, forward shapes,
math/sdpa agreement and the Swin / MViTv2 index helpers.

Expected numbers come from fvcore's own count, from published.md, or from hand derivations below.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
fvcore_nn = pytest.importorskip("fvcore.nn")

from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from vitcost import estimate  # noqa: E402
from vitcost.analytic import walk  # noqa: E402
from vitcost.errors import SpecError, VitcostError  # noqa: E402
from vitcost.nets import ATTN_MODES, build, set_attn_mode  # noqa: E402
from vitcost.nets.mvit import rel_pos_index  # noqa: E402
from vitcost.nets.swin import (  # noqa: E402
    MASK_VALUE,
    relative_position_index,
    shift_attention_mask,
    window_partition,
    window_reverse,
)
from vitcost.specs import MixerSpec, MViTSpec, PixelSpec, SwinSpec, ViTSpec  # noqa: E402
from vitcost.zoo import PRESETS  # noqa: E402

# Small variants with the full structure of each family (all stages, shifted blocks, stage-start pooling).
VIT = ViTSpec(dim=64, depth=2, heads=4)
VIT_NO_CLS = replace(VIT, class_tokens=0)
PIXEL = PixelSpec(dim=32, depth=2, heads=4, vocab=16)
SWIN = SwinSpec(embed_dim=32, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8))
SWIN_W12 = replace(SWIN, depths=(1, 1, 2, 2), window=12)
MVIT = MViTSpec(dims=(32, 64, 128, 256), depths=(1, 2, 1, 2), heads=(1, 2, 4, 8))
MVIT_PLAIN = replace(MVIT, residual_pooling=False, rel_pos=False)
MIXER = MixerSpec(dim=64, depth=2, tokens_hidden=32, channels_hidden=128)


def _hw(res: int | tuple[int, int]) -> tuple[int, int]:
    return (res, res) if isinstance(res, int) else res


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fvcore_self_counts(model: torch.nn.Module, x: torch.Tensor) -> tuple[dict[str, int], int]:
    """Stock fvcore per module, minus its direct children: the ops run in that module's own forward."""
    analysis = fvcore_nn.FlopCountAnalysis(model, (x,))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    totals = analysis.by_module()
    out = {}
    for name, module in model.named_modules():
        children = (f"{name}.{c}" if name else c for c, _ in module.named_children())
        out[name] = int(totals[name] - sum(totals[c] for c in children))
    return out, int(analysis.total())


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


# ---------------------------------------------------------------- structure and parameters


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_op_paths_name_modules_and_params_match(name: str) -> None:
    preset = PRESETS[name]
    model = build(name, preset.size, device="meta")
    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    for op in walk(preset.spec, *preset.size, 1, preset.size.frames):
        if op.kind == "param":
            assert op.path in params, op.path
        elif op.cost.macs or op.cost.norm:  # multiply-accumulates and norms run in a module's forward
            assert op.path == "" or op.path in modules, op.path
        else:  # elementwise steps may name the parameter they apply (the position-embedding add)
            assert op.path == "" or op.path in modules or op.path in params, op.path
    assert _numel(model) == estimate(name, preset.size).params


def test_params_match_published(published: list[tuple[str, int, float, float]]) -> None:
    for name, res, params_m, _ in published:
        n = _numel(build(name, res, device="meta"))
        assert abs(n / 1e6 - params_m) / params_m < 0.005, (name, res, n, params_m)


def test_params_by_hand_small_vit() -> None:
    # D=64, 2 blocks, MLP 256, P=16 at 64x64: 16 patches + 1 class token.
    d, hid, n = 64, 256, 17
    embed = 3 * 16 * 16 * d + d
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * hid + hid) + (hid * d + d)
    expected = embed + d + n * d + 2 * block + 2 * d + (d * 1000 + 1000)
    assert _numel(build(VIT, 64)) == expected


def test_meta_build_of_the_largest_models_is_quick() -> None:
    start = time.perf_counter()
    for name in ("vit_h14", "igpt_l"):
        model = build(name, 224, device="meta")
        assert all(p.device.type == "meta" for p in model.parameters())
    # igpt_l at 224 has a 50,176 x 1536 position embedding: built, not allocated
    assert model.pos_embed.shape == (1, 224 * 224, 1536)
    assert time.perf_counter() - start < 10


def test_sizes_follow_the_resolution() -> None:
    assert build(VIT, 232, device="meta").pos_embed.shape == (1, 14 * 14 + 1, 64)  # floor(232/16) = 14
    assert build(MIXER, (64, 96), device="meta").blocks[0].mlp_tokens.fc1.in_features == 4 * 6
    swin = build(SWIN, 320, device="meta")  # stage grids 80, 40, 20, 10, window 7 everywhere
    assert swin.layers[3].blocks[1].attn_mask.shape == (4, 49, 49)  # padded 14 x 14 -> 2 x 2 windows
    small = build(SWIN, 224, device="meta")  # last grid 7 == window: one window, no shift, no mask
    assert small.layers[3].blocks[1].attn_mask is None
    mvit = build(MVIT, 224, device="meta")  # stage 0: q on 56 x 56, k on 14 x 14 -> 2*56-1 rows
    assert mvit.stages[0].blocks[0].attn.rel_pos_h.shape == (111, 32)


# ---------------------------------------------------------------- stock fvcore, layer by layer

FVCORE_CASES = [
    ("vit_b16", 224, 1), ("swin_t", 224, 1), ("mvitv2_t", 224, 1), ("mixer_b16", 224, 1), ("igpt_s", 16, 1),
    (VIT, 224, 2), (VIT, 232, 1), (VIT, 232, 2), (VIT_NO_CLS, (232, 200), 2), (PIXEL, (12, 10), 2),
    (SWIN, 224, 2), (SWIN, 320, 1), (SWIN, 320, 2), (SWIN, (64, 160), 2), (SWIN_W12, 384, 1),
    (MVIT, 224, 2), (MVIT, 320, 1), (MVIT, 320, 2), (MVIT, 200, 2), (MVIT, (224, 160), 1), (MVIT_PLAIN, (96, 64), 2),
    (MIXER, 224, 2), (MIXER, 232, 1), (MIXER, 232, 2),
]


def _case_id(case: tuple) -> str:
    model, res, batch = case
    name = model if isinstance(model, str) else type(model).__name__
    return f"{name}-{'x'.join(map(str, _hw(res)))}-b{batch}"


@pytest.mark.parametrize("case", FVCORE_CASES, ids=[_case_id(c) for c in FVCORE_CASES])
def test_fvcore_self_counts_equal_analytic_per_layer(case: tuple) -> None:
    model, res, batch = case
    torch.manual_seed(0)
    net = build(model, res).eval()
    counts, total = fvcore_self_counts(net, torch.randn(batch, 3, *_hw(res)))
    est = estimate(model, res, batch)
    assert _nonzero(counts) == _nonzero(est.by_layer("fvcore"))
    assert total == est.count("fvcore")


def test_fvcore_mvit_attention_by_hand() -> None:
    # One stage-0 block at 64x64: stem grid floor((64+6-7)/4)+1 = 16; K/V pooled with stride 4 to 4x4.
    # Two heads of d=16, Nq = 256, Nk = 16:
    #   q k^T and @ v: 2 * heads * Nq * Nk * d;  rel-pos: heads * Nq * (kh + kw) * d
    spec = MViTSpec(dims=(32,), depths=(1,), heads=(2,))
    counts, _ = fvcore_self_counts(build(spec, 64), torch.randn(3, 3, 64, 64))
    heads, d, nq, nk, kh, kw = 2, 16, 256, 16, 4, 4
    assert counts["stages.0.blocks.0.attn"] == 3 * (2 * heads * nq * nk * d + heads * nq * (kh + kw) * d)
    # depthwise 3x3 stride-4 conv on [B*heads, d, 16, 16] -> 4x4: 9 MACs per output element
    assert counts["stages.0.blocks.0.attn.pool_k"] == 3 * heads * d * kh * kw * 9


def test_sdpa_hides_exactly_the_score_matmuls_from_stock_fvcore() -> None:
    # Stock fvcore has no handle for the fused kernel, so switching to sdpa removes q k^T and @ v:
    # 2 * B * N^2 * D per block, N = 4*4 + 1 tokens at 64x64, B = 2.
    net = build(VIT, 64)
    x = torch.randn(2, 3, 64, 64)
    _, math_total = fvcore_self_counts(net, x)
    _, sdpa_total = fvcore_self_counts(set_attn_mode(net, "sdpa"), x)
    assert math_total - sdpa_total == VIT.depth * 2 * 2 * 17**2 * 64


@pytest.mark.parametrize("attn", ATTN_MODES)
@pytest.mark.parametrize("case", [(VIT, 232), (PIXEL, 12), (SWIN, 320), (MVIT, 200), (MIXER, 232)],
                         ids=lambda c: _case_id((*c, 2)))
def test_flop_counter_mode_on_meta_counts_both_attention_modes(case: tuple, attn: str) -> None:
    # torch's FlopCounterMode (2 per MAC of mm/bmm/conv/SDPA) runs on meta tensors: no compute, no memory.
    from torch.utils.flop_counter import FlopCounterMode

    model, res = case
    net = build(model, res, attn=attn, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.empty(2, 3, *_hw(res), device="meta"))
    assert counter.get_total_flops() == estimate(model, res, 2).count("torch")


# ---------------------------------------------------------------- forward passes

FORWARD_CASES = [
    (VIT, 48, (1000,)), (VIT_NO_CLS, (48, 32), (1000,)), (PIXEL, (6, 5), (30, 16)),
    (SWIN, (64, 160), (1000,)), (MVIT, (72, 56), (1000,)), (MIXER, 48, (1000,)),
]


@pytest.mark.parametrize("case", FORWARD_CASES, ids=[_case_id((*c[:2], 2)) for c in FORWARD_CASES])
def test_forward_shape_and_math_sdpa_agree(case: tuple) -> None:
    spec, res, out_shape = case
    torch.manual_seed(0)
    net = build(spec, res).eval()
    x = torch.randn(2, 3, *_hw(res))
    with torch.no_grad():
        math_out = net(x)
        # only the fused (flash) kernel allowed: the inputs and masks must have the shapes it takes
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            sdpa_out = set_attn_mode(net, "sdpa")(x)
    assert math_out.shape == (2, *out_shape)
    assert torch.isfinite(math_out).all()
    torch.testing.assert_close(sdpa_out, math_out, atol=1e-5, rtol=1e-4)


def test_attention_terms_change_the_output() -> None:
    # The relative-position terms reach the scores: zeroing MViTv2's tables changes the output.
    torch.manual_seed(0)
    net = build(MVIT, 64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        for name, p in net.named_parameters():
            if "rel_pos" in name:
                p.zero_()
        assert not torch.allclose(before, net(x))


def test_build_options_and_errors() -> None:
    assert ATTN_MODES == ("math", "sdpa")
    net = build(SWIN, 224, attn="sdpa", dtype="bf16")
    assert net.layers[0].blocks[1].attn.attn_mode == "sdpa"
    assert net.layers[0].blocks[1].attn_mask.dtype == torch.bfloat16
    assert net.layers[0].blocks[1].attn.relative_position_index.dtype == torch.int64
    assert all(p.dtype == torch.bfloat16 for p in net.parameters())
    with pytest.raises(VitcostError):
        build(VIT, 64, attn="flash")
    with pytest.raises(VitcostError):
        set_attn_mode(net, "flash")
    with pytest.raises(VitcostError):
        build(VIT, 64, dtype="fp8")
    with pytest.raises(VitcostError, match="built for"):
        build(VIT, 32)(torch.randn(1, 3, 64, 64))
    with pytest.raises(SpecError):
        build("swin_t", 16)  # 4x4 first grid, smaller than the window
    with pytest.raises(SpecError, match="must be 1 or even"):
        # stem grid 54: a stride-3 query conv (k=3, pad 1) gives 18, the k=4 pad-2 max-pool 19
        build(replace(MVIT, stage_q_stride=3), 216, device="meta")


# ---------------------------------------------------------------- Swin and MViTv2 helpers


def test_window_partition_round_trip() -> None:
    x = torch.randn(2, 6, 8, 3)
    windows = window_partition(x, 3, 4)
    assert windows.shape == (2 * 2 * 2, 12, 3)
    torch.testing.assert_close(windows[1], x[0, :3, 4:].reshape(12, 3))  # second window: top right
    torch.testing.assert_close(window_reverse(windows, 3, 4, 6, 8), x)


def test_relative_position_index_by_hand() -> None:
    # 2x2 window, tokens (0,0), (0,1), (1,0), (1,1); index (dy+1)*3 + (dx+1) into a 3x3 table.
    expected = [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    assert relative_position_index(2, 2).tolist() == expected


@pytest.mark.parametrize("hp,wp,wh,ww,sh,sw", [(14, 14, 7, 7, 3, 3), (4, 14, 4, 7, 0, 3), (12, 9, 6, 3, 3, 1)])
def test_shift_mask_allows_exactly_the_pairs_that_were_neighbours(hp, wp, wh, ww, sh, sw) -> None:
    # After rolling by (-sh, -sw), token (y, x) came from ((y + sh) % hp, (x + sw) % wp). Two tokens of a
    # window may attend to each other iff the roll did not wrap one of them around without the other.
    mask = shift_attention_mask(hp, wp, wh, ww, sh, sw)
    ys, xs = torch.meshgrid(torch.arange(hp), torch.arange(wp), indexing="ij")
    wrapped = torch.stack([(ys + sh) >= hp, (xs + sw) >= wp], dim=-1).float()  # [hp, wp, 2]
    w = window_partition(wrapped[None], wh, ww)  # [nW, N, 2]
    same = (w[:, :, None, :] == w[:, None, :, :]).all(-1)
    assert mask.shape == (hp // wh * (wp // ww), wh * ww, wh * ww)
    assert torch.equal(mask == 0, same)
    assert set(mask.unique().tolist()) <= {0.0, MASK_VALUE}


def test_rel_pos_index_by_hand() -> None:
    # q on 2 positions, k on 4: q positions are stretched by 2; index 2i - j + 3 into a 7-row table.
    assert rel_pos_index(2, 4).tolist() == [[3, 2, 1, 0], [5, 4, 3, 2]]
    # equal grids: i - j + (k - 1)
    assert rel_pos_index(3, 3).tolist() == [[2, 1, 0], [3, 2, 1], [4, 3, 2]]
    # k coarser by 2: i - 2j + 2*(k - 1), largest index 2*4 - 2 = 6 fits 2*max(4, 2) - 1 = 7 rows
    assert rel_pos_index(4, 2).tolist() == [[2, 0], [3, 1], [4, 2], [5, 3]]
