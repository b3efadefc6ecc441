"""Memory: the live-tensor tracker against hand-computed figures, the analytic prediction against the
tracker on real forwards of every family, and the memory wall against a scan of resolutions."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vitcost import estimate
from vitcost.analytic.memory import predict_memory
from vitcost.analytic.memory_wall import memory_wall
from vitcost.design import parse_design
from vitcost.specs import MixerSpec, MViTSpec, SwinSpec, ViTSpec
from vitcost.vocab import Dtype, Kernel
from vitcost.zoo import get_preset

torch = pytest.importorskip("torch")

from vitcost.measure.memory import LiveTensorTracker, measure_forward_memory, track_forward  # noqa: E402
from vitcost.nets import build  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # the scratch buffers follow the thread count

F32 = 4

# Small variants of one preset per family (and a second Swin/MViT/pixel shape with more heads, so both
# sides of the head-split copy rule are exercised). Sizes keep every forward well under a second.
TINY = {
    "vit": (replace(get_preset("vit_ti16").spec, depth=2), 64),
    "vit_patch8": (replace(get_preset("vit_ti16").spec, depth=2, patch=8), 96),
    "pixel": (replace(get_preset("igpt_s").spec, dim=64, depth=2, heads=4), 16),
    "swin": (replace(get_preset("swin_t").spec, embed_dim=32, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8)), 224),
    "swin_padded": (replace(get_preset("swin_t").spec, embed_dim=32, depths=(2, 2, 2, 2), heads=(2, 2, 4, 8)), 160),
    "mvit": (replace(get_preset("mvitv2_t").spec, dims=(32, 64, 128, 256), depths=(1, 1, 1, 1)), 128),
    "mvit_heads": (replace(get_preset("mvitv2_t").spec, dims=(32, 64, 128, 256), depths=(2, 2, 1, 1),
                           heads=(2, 2, 4, 8)), 96),
    "mixer": (replace(get_preset("mixer_s16").spec, depth=2, dim=64, tokens_hidden=32, channels_hidden=256), 64),
    # ViTDet/SAM-style hybrid: window blocks on a 9x9 grid padded to 12x12, global blocks 1 and 3
    "vit_hybrid": (ViTSpec(dim=64, depth=4, heads=2, patch=8, class_tokens=0, window=4, global_blocks=(1, 3),
                           num_classes=10), 72),
    # MViTv2 hybrid window attention: window blocks 0, 1 on a 18x18 grid (q padded to 24x24, k/v 5x5 to 6x6),
    # 2 (stage 1's first, on 9x9 padded to 12x12); block 3 global with its K/V stride doubled
    "mvit_hybrid": (MViTSpec(dims=(16, 32), depths=(2, 2), heads=(1, 2), window=8, global_blocks=(3,),
                             double_kv_blocks=(3,), num_classes=10), 72),
    # ResNet-50 with non-local blocks (resnet50_nl5's placement and subsampling) at a quarter of the width,
    # on an input no stride divides
    "resnet_nl": (replace(get_preset("resnet50_nl5").spec, width=16, num_classes=10), 97),
}




# --- the tracker, on modules whose memory is worked out by hand ---------------------------------------

class _LinearRelu(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, 16)

    def forward(self, x):
        return self.lin(x).relu()


def test_tracker_counts_outputs_alive_together():
    # x [4, 8] is resident; lin(x) [4, 16] (256 B) is alive while relu writes its [4, 16] (256 B): 512 B.
    net, x = _LinearRelu(), torch.randn(4, 8)
    t = track_forward(net, x)
    assert t.peak == 2 * 4 * 16 * F32
    assert t.score_bytes == 0 and t.sdpa_backend == "none"


def test_tracker_ignores_views_inplace_and_resident_tensors():
    class ViewsOnly(torch.nn.Module):
        def forward(self, x):
            y = x.view(2, 8).transpose(0, 1)  # views of the input: no allocation
            x.add_(1.0)  # in place on the input: no allocation
            return y.sum()  # one float32 scalar: 4 bytes

    assert track_forward(ViewsOnly(), torch.randn(4, 4)).peak == F32


def test_tracker_frees_dead_tensors():
    class Chain(torch.nn.Module):
        def forward(self, x):
            for _ in range(5):
                x = x * 2.0  # each step frees the previous product once rebound
            return x

    x = torch.randn(1000)
    # at each multiply the previous product (or the resident input) and the new one: at most 2 x 4000 B
    assert track_forward(Chain(), x).peak == 2 * 1000 * F32


def test_tracker_scores_math_vs_fused():
    b, h, n, d = 2, 3, 10, 8

    class Attn(torch.nn.Module):
        def __init__(self, fused: bool) -> None:
            super().__init__()
            self.fused = fused

        def forward(self, x):
            q = k = v = x
            if self.fused:
                return torch.nn.functional.scaled_dot_product_attention(q, k, v)
            return ((q @ k.transpose(-2, -1)) * d**-0.5).softmax(-1) @ v

    x = torch.randn(b, h, n, d)
    math = track_forward(Attn(False), x)
    assert math.score_bytes == math.score_peak == b * h * n * n * F32
    assert math.sdpa_backend == "math"
    fused = track_forward(Attn(True), x)
    assert fused.score_bytes == 0
    assert fused.sdpa_backend == "flash (cpu)"


def test_tracker_as_context_manager_directly():
    x = torch.randn(3, 5)
    with torch.inference_mode(), LiveTensorTracker([x]) as t:
        y = x + 1  # 60 B
        z = y * 2  # 60 B, y still alive
        del y, z
    assert t.peak == 2 * 15 * F32 and t.live == 0


# --- prediction against measurement, every family ------------------------------------------------------

CASES = [(name, attn) for name in sorted(TINY) for attn in ("math", "sdpa")
         if not (TINY[name][0].family == "mixer" and attn == "sdpa")]  # Mixer has no attention


def _measure_and_predict(spec, res, batch, attn, dtype="fp32"):
    net = build(spec, res, attn=attn, dtype=dtype).eval()
    x = torch.randn(batch, 3, res, res, dtype=next(net.parameters()).dtype)
    measured = measure_forward_memory(net, x)
    return measured, predict_memory(estimate(spec, res, batch, dtype), Kernel(attn))


@pytest.mark.parametrize("name,attn", CASES)
def test_predicted_vs_measured_forward_memory(name, attn):
    spec, res = TINY[name]
    measured, pred = _measure_and_predict(spec, res, 2, attn)
    # attention-score bytes: exact, math and fused alike (a fused kernel materialises none)
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes
    # peak activation memory of the forward: within 10%
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


@settings(max_examples=12, deadline=None)
@given(heads=st.sampled_from([1, 2, 3]), head_dim=st.sampled_from([4, 8]), depth=st.integers(1, 2),
       grid=st.integers(1, 5), patch=st.sampled_from([4, 8]), class_tokens=st.integers(0, 1),
       batch=st.integers(1, 3), attn=st.sampled_from(["math", "sdpa"]), dtype=st.sampled_from(["fp32", "bf16"]))
def test_random_vits_predicted_vs_measured(heads, head_dim, depth, grid, patch, class_tokens, batch, attn, dtype):
    spec = ViTSpec(dim=heads * head_dim, depth=depth, heads=heads, patch=patch, class_tokens=class_tokens,
                   num_classes=10)
    measured, pred = _measure_and_predict(spec, grid * patch, batch, attn, dtype)
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10)


@settings(max_examples=12, deadline=None)
@given(heads=st.sampled_from([1, 2, 3]), window=st.integers(2, 5), grid=st.integers(2, 9), depth=st.integers(1, 3),
       batch=st.integers(1, 2), attn=st.sampled_from(["math", "sdpa"]), data=st.data())
def test_random_windowed_vits_predicted_vs_measured(heads, window, grid, depth, batch, attn, data):
    """ViTs with window attention (padded when the grid does not divide the window) and some global blocks."""
    global_blocks = data.draw(st.sets(st.integers(0, depth - 1), max_size=depth - 1))
    spec = ViTSpec(dim=8 * heads, depth=depth, heads=heads, patch=4, class_tokens=0, window=window,
                   global_blocks=tuple(sorted(global_blocks)), num_classes=10)
    measured, pred = _measure_and_predict(spec, grid * 4, batch, attn)
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10)


@settings(max_examples=12, deadline=None)
@given(dim=st.sampled_from([8, 16]), heads=st.sampled_from([(1, 2), (2, 2), (2, 4)]), window=st.integers(2, 4),
       grid=st.integers(4, 13), batch=st.integers(1, 2), attn=st.sampled_from(["math", "sdpa"]))
def test_random_swins_predicted_vs_measured(dim, heads, window, grid, batch, attn):
    """Two-stage Swins on grids that do and do not divide the window (padding), shifted and not."""
    assume(grid >= window)
    spec = SwinSpec(embed_dim=dim, depths=(2, 2), heads=heads, window=window, num_classes=10)
    measured, pred = _measure_and_predict(spec, grid * spec.patch, batch, attn)
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10)


@settings(max_examples=12, deadline=None)
@given(dim=st.sampled_from([8, 16]), depths=st.sampled_from([(1, 1), (2, 1), (1, 2)]),
       heads=st.sampled_from([(1, 1), (1, 2), (2, 2)]), kv_stride=st.sampled_from([1, 2, 4]),
       res=st.integers(8, 40), batch=st.integers(1, 2), attn=st.sampled_from(["math", "sdpa"]))
def test_random_mvits_predicted_vs_measured(dim, depths, heads, kv_stride, res, batch, attn):
    """Two-stage MViTv2s: pooled and strided queries, adaptive K/V strides, expanding channels."""
    spec = MViTSpec(dims=(dim, 2 * dim), depths=depths, heads=heads, kv_stride=kv_stride, num_classes=10)
    measured, pred = _measure_and_predict(spec, res, batch, attn)
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10)


@settings(max_examples=8, deadline=None)
@given(depths=st.sampled_from([(1, 1), (2, 1), (1, 2)]), heads=st.sampled_from([(1, 1), (1, 2), (2, 2)]),
       kv_stride=st.sampled_from([1, 2, 4]), window=st.sampled_from([4, 8, 16]), last_global=st.booleans(),
       res=st.integers(8, 48), batch=st.integers(1, 2), attn=st.sampled_from(["math", "sdpa"]))
def test_random_mvit_hybrids_predicted_vs_measured(depths, heads, kv_stride, window, last_global, res, batch, attn):
    """Two-stage MViTv2s with window blocks: padded or exact windows, one window or several, a global last
    block with a doubled K/V stride."""
    last = sum(depths) - 1
    spec = MViTSpec(dims=(8, 16), depths=depths, heads=heads, kv_stride=kv_stride, window=window,
                    global_blocks=(last,) if last_global else (), double_kv_blocks=(last,) if last_global else (),
                    num_classes=10)
    measured, pred = _measure_and_predict(spec, res, batch, attn)
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10)


@settings(max_examples=8, deadline=None)
@given(dim=st.sampled_from([8, 16]), tokens_hidden=st.sampled_from([4, 32]), channels_hidden=st.sampled_from([8, 64]),
       grid=st.integers(1, 6), batch=st.integers(1, 3), dtype=st.sampled_from(["fp32", "bf16"]))
def test_random_mixers_predicted_vs_measured(dim, tokens_hidden, channels_hidden, grid, batch, dtype):
    spec = MixerSpec(dim=dim, depth=2, tokens_hidden=tokens_hidden, channels_hidden=channels_hidden, patch=4,
                     num_classes=10)
    measured, pred = _measure_and_predict(spec, grid * 4, batch, "math", dtype)
    assert measured.score_bytes == pred.stored_score_bytes == 0
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10)


def test_score_bytes_by_hand_vit():
    # ViT-Ti/16 shape, 2 blocks, 64x64: N = (64/16)^2 + 1 class token = 17, 3 heads, batch 2, fp32:
    # each block's softmax holds 2 * 3 * 17 * 17 floats = 6936 bytes; two blocks 13872.
    spec, res = TINY["vit"]
    measured = measure_forward_memory(build(spec, res).eval(), torch.randn(2, 3, res, res))
    assert measured.score_peak_bytes == 2 * 3 * 17 * 17 * F32
    assert measured.score_bytes == 2 * (2 * 3 * 17 * 17 * F32)
    assert predict_memory(estimate(spec, res, 2)).stored_score_bytes == measured.score_bytes


def test_activation_peak_by_hand_vit_mlp():
    # The small ViT peaks in the second block's MLP: the embedded tokens (the nn.Sequential of blocks keeps
    # its input referenced until the last block returns, as timm's), the block input (kept by the
    # Sequential's loop), x + attn(x), norm2's output (x = 2*17*192 floats each) and fc1's and GELU's
    # outputs (h = 2*17*768 floats each).
    spec, res = TINY["vit"]
    x, h = 2 * 17 * 192 * F32, 2 * 17 * 768 * F32
    pred = predict_memory(estimate(spec, res, 2))
    assert pred.activation_peak_bytes == 4 * x + 2 * h
    assert pred.peak_at == "blocks.1.mlp.act"
    assert measure_forward_memory(build(spec, res).eval(), torch.randn(2, 3, res, res)).peak_bytes == 4 * x + 2 * h


def test_activation_peak_by_hand_pixel_scores():
    # Pixel attention 16x16: N = 256 tokens of width 64, 4 heads, batch 1. In block 1's softmax: the
    # embedded tokens (held by the nn.Sequential of blocks), the block input, norm1's output (x each), qkv
    # (3x), the scaled q (x; timm's attention rebinds q = q * scale and keeps it to its end), the raw
    # scores and their softmax (s each); batch 1 needs no contiguous copies of the head-split q/k/v.
    # s = 4*256*256 floats, x = 256*64 floats.
    spec, res = TINY["pixel"]
    x, s = 256 * 64 * F32, 4 * 256 * 256 * F32
    pred = predict_memory(estimate(spec, res, 1))
    assert pred.activation_peak_bytes == 7 * x + 2 * s
    measured = measure_forward_memory(build(spec, res).eval(), torch.randn(1, 3, res, res))
    assert measured.peak_bytes == 7 * x + 2 * s


def test_fused_attention_never_predicts_more_than_math():
    for spec, res in TINY.values():
        est = estimate(spec, res, 2)
        fused, math = (predict_memory(est, k).activation_peak_bytes for k in (Kernel.flash, Kernel.math))
        assert fused <= math


def test_weights_and_input_bytes():
    spec, res = TINY["vit"]
    net = build(spec, res)
    pred = predict_memory(estimate(spec, res, 3, "bf16"))
    assert pred.weights_bytes == 2 * sum(p.numel() for p in net.parameters())
    assert pred.input_bytes == 2 * 3 * 3 * res * res
    assert pred.total_bytes == pred.weights_bytes + pred.input_bytes + pred.activation_peak_bytes


def test_op_inputs_of_linears_by_hand():
    spec, res = TINY["vit"]
    est = estimate(spec, res, 2)
    ins = {op.path: op.inp for op in est.ops if op.kind == "linear"}
    assert ins["blocks.0.attn.qkv"] == 2 * 17 * 192  # [B, N, D]
    assert ins["blocks.0.mlp.fc2"] == 2 * 17 * 768  # [B, N, hidden]
    assert ins["head"] == 2 * 192  # the class token only


# --- the memory wall -----------------------------------------------------------------------------------

def _scan(spec, budget, step, start, stop, attn="math"):
    """Largest R in range whose predicted total fits: a plain scan, independent of the wall's solver."""
    best = None
    for r in range(start, stop, step):
        if predict_memory(estimate(spec, r, 1), Kernel(attn)).total_bytes <= budget:
            best = r
    return best


@pytest.mark.parametrize("name,attn", [("vit", "math"), ("vit", "flash"), ("pixel", "math"), ("mixer", "math"),
                                       ("mvit", "math"), ("resnet_nl", "math")])
def test_memory_wall_matches_a_scan(name, attn):
    spec, _ = TINY[name]
    budget = 64 * 2**20
    wall = memory_wall(parse_design(spec), budget, 1, Dtype.fp32, Kernel(attn))
    assert wall.res is not None
    assert wall.total_bytes <= budget < wall.next_total_bytes
    step = wall.step
    assert _scan(spec, budget, step, step * (1 if name not in ("mvit", "resnet_nl") else 8), wall.res + 12 * step,
                 attn) == wall.res


def test_memory_wall_swin_brackets_the_budget():
    spec, _ = TINY["swin"]
    budget = 256 * 2**20
    wall = memory_wall(parse_design(spec), budget)
    assert wall.total_bytes <= budget < wall.next_total_bytes
    assert predict_memory(estimate(spec, wall.res, 1)).total_bytes == wall.total_bytes


def test_memory_wall_pixel_by_hand():
    """iGPT-S at batch 1, fp32, math: the wall is where two [8, R^2, R^2] float32 score tensors plus
    the O(R^2) terms stop fitting. The scores alone bound it: 2 * 8 * R^4 * 4 <= budget."""
    budget = 80 * 10**9
    wall = memory_wall(parse_design("igpt_s"), budget, 1, Dtype.fp32, Kernel.math)
    bound = int((budget / (2 * 8 * 4)) ** 0.25)  # the scores alone
    assert wall.res <= bound
    assert wall.res >= bound - 2  # the rest is small next to the scores at this size
    assert 2 * 8 * wall.res**4 * 4 <= budget


def test_memory_wall_grows_with_the_budget_and_shrinks_with_the_batch():
    small = memory_wall(parse_design("vit_b16"), 16 * 2**30).res
    big = memory_wall(parse_design("vit_b16"), 80 * 2**30).res
    batched = memory_wall(parse_design("vit_b16"), 80 * 2**30, batch=8).res
    assert small < big and batched < big


def test_memory_wall_none_fits():
    wall = memory_wall(parse_design("vit_b16"), 1000)  # 1 kB: not even the weights
    assert wall.res is None
