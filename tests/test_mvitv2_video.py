"""MViTv2 on clips (SlowFast's video MViTv2): the preset against the paper, the token grids, parameters and the
temporal relative positions by hand, one frame equal to the image model, one-line errors, the reference net exact
against fvcore and FlopCounterMode per layer, and its memory against the live-tensor tracker and a measured step."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitcost import estimate
from vitcost.cli import main
from vitcost.specs import MViTSpec
from vitcost.vocab import Kernel

# a small video MViTv2: the preset's structure (cube embedding, 3x3x3 pooling, K/V stride 8 adapting, temporal
# relative positions, a class token) at widths 16-128
TINY = MViTSpec(dims=(16, 32, 64, 128), depths=(1, 2, 1, 1), heads=(1, 2, 4, 8), num_classes=10, kv_stride=8,
                stem_kernel_t=3, stem_stride_t=2, stem_padding_t=1, pool_kernel_t=3, rel_pos_t=True, cls_token=True)
PRESET = "mvitv2_s_16x4"
# the preset's blocks: (channels, query grid side) of each of the 16 at 16x224x224 (Q halved in space at blocks
# 1, 3 and 14); the cube embedding (3x7x7, stride 2x4x4, padding 1x3x3) gives 8 x 56 x 56, Q is never strided in T
BLOCKS = [(96, 56), *[(192, 28)] * 2, *[(384, 14)] * 11, *[(768, 7)] * 2]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_preset_reproduces_the_paper(published_cells):
    """MViTv2 paper, Kinetics-400 table (and SlowFast's projects/mvitv2 README): MViTv2-S 16x4, 34.5M params and
    64 GFLOPs (MACs) per view; params to the paper's rounding, MACs to its whole GFLOPs (64.22: see MViTSpec)."""
    cells = published_cells("MViTv2-S 16x4, 16x224x224 (Kinetics-400)")
    params_m, gmacs = float(cells[2].rstrip("M")), float(cells[3])
    assert (params_m, gmacs) == (34.5, 64)
    est = estimate(PRESET, "16x224x224")
    assert round(est.params / 1e6, 1) == params_m
    assert round(est.macs / 1e9) == gmacs and est.macs / 1e9 == pytest.approx(gmacs, rel=0.005)


def test_token_grids_by_hand():
    """Each block's queries: the class token + 8 x s x s; keys: the block input side pooled by its stage's K/V
    stride (1x8x8, 1x4x4, 1x2x2, 1x1x1; kernel 3, padding 1: floor((g - 1) / s) + 1), 8 frames throughout."""
    calls = [op.call for op in estimate(PRESET, "16x224x224").ops if op.kind == "attention"]
    k_side = [7, 14, 7, 14, *[7] * 10, 14, 7]
    assert [c.nq for c in calls] == [1 + 8 * s * s for _, s in BLOCKS]
    assert [c.nkv for c in calls] == [1 + 8 * s * s for s in k_side]
    assert [c.heads for c in calls] == [1, 2, 2, 4, *[4] * 10, 8, 8]
    assert all(c.cls == 1 and c.rel_t == (8, 8) for c in calls)


def test_params_by_hand():
    """The cube embedding 96 x 3 x 3 x 7 x 7 weights + 96 biases, the class token 96, the head 768 x 400 + 400;
    block 0's tables: (2 * 56 - 1) rows along h and w, (2 * 8 - 1) along t, of head width 96."""
    ops = {op.path: op for op in estimate(PRESET, "16x224x224").ops if op.kind in ("param", "conv", "linear")}
    assert ops["patch_embed.proj"].cost.params == 96 * 3 * 3 * 7 * 7 + 96
    assert ops["cls_token"].cost.params == 96 and ops["head"].cost.params == 768 * 400 + 400
    attn = "stages.0.blocks.0.attn"
    assert ops[f"{attn}.rel_pos_h"].cost.params == ops[f"{attn}.rel_pos_w"].cost.params == 111 * 96
    assert ops[f"{attn}.rel_pos_t"].cost.params == 15 * 96


def test_temporal_relative_positions_by_hand():
    """The third, temporal table adds per block q [8*s*s grid queries, d] @ R_t^T [d, 8] for each head: heads x
    d = channels, so 8*s*s * 8 * channels MACs (the class token's row left out), and a (2*8 - 1) x 96 table."""
    with_t, without = estimate(PRESET, "16x224x224"), estimate(f"{PRESET}:rel_pos_t=false", "16x224x224")
    assert with_t.macs - without.macs == sum(8 * s * s * 8 * c for c, s in BLOCKS)
    assert with_t.params - without.params == 16 * 15 * 96


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), heads=st.integers(1, 3), q=st.tuples(*[st.integers(1, 4)] * 3),
       k=st.tuples(*[st.integers(1, 4)] * 3), d=st.integers(1, 8), cls=st.integers(0, 1), residual=st.booleans())
def test_clip_attention_record_is_the_sum_of_its_steps(b, heads, q, k, d, cls, residual):
    """An attention record on a t x h x w grid with a temporal table and a class token: its closed form equals its
    steps, and the rel-pos products take the grid's queries only: B*h*(Nq - c)*(kh + kw + kt)*d MACs beside
    2*B*h*Nq*Nk*d; the grid's scores get the three-way sum (2 adds) and its add to the scores."""
    from vitcost.analytic.cost import Cost
    from vitcost.analytic.trace import Trace, attention_steps

    nq, nk = cls + q[0] * q[1] * q[2], cls + k[0] * k[1] * k[2]
    t = Trace(b)
    t.attention("attn", b, heads, nq, nk, d, rel=(q[1], q[2], k[1], k[2]), residual=residual, rel_t=(q[0], k[0]),
                cls=cls)
    (op,) = t.ops
    assert op.cost == Cost.sum(step.cost for step in attention_steps(op.call))
    grid_q = b * heads * (nq - cls)
    assert op.cost.macs == 2 * b * heads * nq * nk * d + grid_q * (k[0] + k[1] + k[2]) * d
    assert op.cost.eltwise == (b * heads * nq * d + 3 * grid_q * (nk - cls) + (grid_q * d if residual else 0))


def test_one_frame_is_the_image():
    """An image preset given one frame (1xHxW) is the image model: every op's cost, and the memory model."""
    from vitcost.analytic.memory import predict_memory

    clip, image = estimate("mvitv2_s", "1x224x224"), estimate("mvitv2_s", 224)
    assert [(op.path, op.kind, op.cost) for op in clip.ops] == [(op.path, op.kind, op.cost) for op in image.ops]
    for kernel in (Kernel.math, Kernel.sdpa):
        assert predict_memory(clip, kernel).activation_peak_bytes == predict_memory(image, kernel).activation_peak_bytes


def test_an_image_preset_on_a_clip_is_its_video_model():
    """The time-axis fields default to SlowFast's MVITv2_S_16x4 config (3x7x7 cube embedding of stride 2x4x4 and
    padding 1x3x3, 3x3x3 pooling, temporal relative positions, a class token), so the image preset MViTv2-S with
    that config's K/V stride and classes, given 16 frames, is the video preset; and the video preset given one
    frame is the image model."""
    video = estimate("mvitv2_s:kv_stride=8,num_classes=400", "16x224x224")
    preset = estimate(PRESET, "16x224x224")
    assert [(op.path, op.kind, op.cost) for op in video.ops] == [(op.path, op.kind, op.cost) for op in preset.ops]
    ops = {op.path: op for op in video.ops}
    assert ops["patch_embed.proj"].cost.params == 96 * 3 * 3 * 7 * 7 + 96  # the 3x7x7 cube embedding
    assert "cls_token" in ops and "stages.0.blocks.0.attn.rel_pos_t" in ops
    one = estimate(PRESET, 224)
    image = estimate("mvitv2_s:kv_stride=8,num_classes=400", 224)
    assert [(op.path, op.cost) for op in one.ops] == [(op.path, op.cost) for op in image.ops]
    assert "cls_token" not in {op.path for op in one.ops}


@pytest.mark.parametrize("model,res,message", [
    (PRESET, "15x224x224", "does not divide"),
    ("mvitv2_s", "3x224x224", "does not divide"),  # the cube embedding's stride 2 in T
    (f"{PRESET}:stage_q_stride_t=3", "16x224x224", "1 or even"),
    (f"{PRESET}:pool_kernel_t=2", "16x224x224", "odd"),
])
def test_bad_sizes_and_fields_are_one_line_exit_2(capsys, model, res, message):
    code, out, err = run(capsys, "compare", "-m", model, "-r", res)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_compare_and_formula_of_the_preset(capsys):
    code, out, _ = run(capsys, "compare", "-m", PRESET, "-r", "16x224x224", "-f", "json")
    assert code == 0 and '"frames": 16' in out
    code, out, _ = run(capsys, "formula", PRESET)
    assert code == 0 and "T" in out


torch = pytest.importorskip("torch")


# 72 x 56: padded pooling and a non-square grid; batch 1 and 2, both attention paths
@pytest.mark.parametrize("res,batch,attn", [("4x64x64", 1, "math"), ("4x64x64", 2, "sdpa"), ("2x72x56", 2, "math")])
def test_exact_against_both_counters(passes_exactly, res, batch, attn):
    passes_exactly(TINY, res, batch=batch, attn=attn)


@pytest.mark.parametrize("model,res,batch,attn", [
    (f"{PRESET}:depths=1-1-1-1", "4x32x32", 2, "math"),  # the preset's own layers, widths 96-768
    ("mvitv2_t:depths=1-1-1-1", "1x64x64", 1, "sdpa"),  # one frame through the 3-D modules
])
def test_presets_exact_against_both_counters(passes_exactly, model, res, batch, attn):
    passes_exactly(model, res, batch=batch, attn=attn)


@pytest.mark.parametrize("res", ["4x64x64", "2x72x56"])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_memory_against_the_tracker(one_thread, res, batch, attn):
    from vitcost.analytic.memory import predict_memory
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build
    from vitcost.vocab import parse_res

    size = parse_res(res)
    net = build(TINY, size, attn=attn).eval()
    measured = measure_forward_memory(net, torch.randn(batch, 3, size.frames, *size))
    pred = predict_memory(estimate(TINY, size, batch), Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


@pytest.mark.parametrize("batch,attn", [(1, "math"), (2, "sdpa")])
def test_training_step_memory_against_a_measured_step(one_thread, batch, attn):
    """One AdamW step on the CPU: the tensors autograd saves (the three rel-pos products' operands among them)
    within 2%, the backward and step peaks within 10%."""
    from vitcost.analytic.train_memory import train_memory
    from vitcost.measure.train_memory import measure_train_step
    from vitcost.nets import build
    from vitcost.vocab import Optimizer, parse_res

    size = parse_res("4x64x64")
    measured = measure_train_step(build(TINY, size, attn=attn), torch.randn(batch, 3, size.frames, *size))
    pred = train_memory(estimate(TINY, size, batch, "fp32", attn), Optimizer.adamw)
    assert pred.weights == measured.weights_bytes
    assert pred.activations_saved == pytest.approx(measured.activations_saved_bytes, rel=0.02)
    assert pred.backward_peak == pytest.approx(measured.backward_peak_bytes, rel=0.10), pred.peak_at
    assert pred.step_peak == pytest.approx(measured.step_peak_bytes, rel=0.10), pred.peak_at
