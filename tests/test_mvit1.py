"""MViT v1 (Fan et al. 2021): the presets against the paper's tables, the token grids by hand, the reference net
exact against fvcore and FlopCounterMode per layer, and its memory against the live-tensor tracker."""

from __future__ import annotations

import pytest

from vitcost import estimate
from vitcost.cli import main
from vitcost.errors import SpecError
from vitcost.specs import MViTv1Spec
from vitcost.vocab import Kernel

# a small MViT: the preset's structure (four stages, Q strided at each stage start, adaptive K/V stride)
TINY = MViTv1Spec(dims=(16, 32, 64, 128), depths=(1, 2, 2, 1), heads=(1, 2, 4, 8), num_classes=10)
TINY_2D = MViTv1Spec(dims=(16, 32, 64, 128), depths=(1, 2, 2, 1), heads=(2, 2, 4, 8), num_classes=10,
                     patch_kernel=(1, 7, 7), patch_stride=(1, 4, 4), patch_padding=(0, 3, 3), pool_kernel=(1, 3, 3),
                     kv_stride=(1, 4, 4), sep_pos_embed=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_presets_reproduce_the_paper():
    """MViT paper: MViT-B 16x4 on Kinetics-400, 36.6M params and 70.5 GFLOPs (MACs); MViT-B-16 on ImageNet,
    37.0M and 7.8G. Params to the paper's rounding; MACs within 0.5% (70.60 against 70.5: see MViTv1Spec)."""
    video = estimate("mvit_b_16x4", "16x224x224")
    assert round(video.params / 1e6, 1) == 36.6
    assert video.macs / 1e9 == pytest.approx(70.5, rel=0.005)
    image = estimate("mvit_b16", 224)
    assert round(image.params / 1e6, 1) == 37.0 and round(image.macs / 1e9, 1) == 7.8


def test_token_grids_by_hand():
    """MViT-B 16x4 at 16x224x224: the cube embedding (3x7x7, stride 2x4x4, padding 1x3x3) gives 8x56x56 tokens;
    Q is halved in space at blocks 1, 3 and 14 (28, 14, 7); K/V are pooled with stride 1x8x8, 1x4x4, 1x2x2,
    1x1x1 by stage (kernel 3, padding 1: floor((g - 1) / s) + 1), each with the class token."""
    calls = [op.call for op in estimate("mvit_b_16x4", "16x224x224").ops if op.kind == "attention"]
    q_side = [56, 28, 28, 14, *[14] * 10, 7, 7]
    k_side = [7, 14, 7, 14, *[7] * 10, 14, 7]  # the block's input side pooled by its stage's K/V stride
    assert [c.nq for c in calls] == [1 + 8 * s * s for s in q_side]
    assert [c.nkv for c in calls] == [1 + 8 * s * s for s in k_side]
    assert [c.heads for c in calls] == [1, 2, 2, 4, *[4] * 10, 8, 8]


def test_params_by_hand():
    """The separable position embedding: 56*56 spatial rows, 8 temporal rows and a class row of 96; the cube
    embedding 96 x 3 x 3 x 7 x 7 weights + 96 biases; the head 768 x 400 + 400."""
    ops = {op.path: op for op in estimate("mvit_b_16x4", "16x224x224").ops if op.kind in ("param", "conv", "linear")}
    assert ops["pos_embed_spatial"].cost.params == 56 * 56 * 96 and ops["pos_embed_temporal"].cost.params == 8 * 96
    assert ops["patch_embed.proj"].cost.params == 96 * 3 * 3 * 7 * 7 + 96
    assert ops["head"].cost.params == 768 * 400 + 400


@pytest.mark.parametrize("model,res,message", [
    ("mvit_b_16x4", "15x224x224", "does not divide"),
    ("mvit_b_16x4", "224", "does not divide"),
    ("resnet50", "16x224x224", "takes images"),
])
def test_bad_sizes_are_one_line_exit_2(capsys, model, res, message):
    code, out, err = run(capsys, "compare", "-m", model, "-r", res)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_bad_spec_fields():
    with pytest.raises(SpecError, match="odd"):
        MViTv1Spec(dims=(16,), depths=(1,), heads=(1,), pool_kernel=(2, 3, 3))
    with pytest.raises(SpecError, match="three"):
        MViTv1Spec(dims=(16,), depths=(1,), heads=(1,), kv_stride=(8, 8))
    with pytest.raises(SpecError, match="1 or even"):
        MViTv1Spec(dims=(16, 32), depths=(1, 1), heads=(1, 2), stage_q_stride=(1, 3, 3))


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("spec,res", [(TINY, "4x64x64"), (TINY, "4x72x72"), (TINY, "6x40x40"),  # 72, 40: pads
                                      (TINY_2D, "64"), (TINY_2D, "72"), (TINY_2D, "2x48x48")])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_exact_against_both_counters(spec, res, batch, attn):
    from vitcost.measure.check import check_model

    r = check_model(spec, res, batch, attn=attn)
    assert r.status == "PASS", r.first_mismatch
    assert r.torch == r.analytic and r.fvcore == r.analytic


@pytest.mark.parametrize("model,res", [("mvit_b_16x4:depths=1-1-1-1", "4x32x32"),
                                       ("mvit_b_16x4:depths=1-1-1-1", "2x40x40"),
                                       ("mvit_b16:depths=1-1-1-1", "48")])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_presets_exact_against_both_counters(model, res, batch, attn):
    """The presets' own layers (widths 96-768, their pooling kernels and strides), one block per stage, on
    small inputs."""
    from vitcost.measure.check import check_model

    assert check_model(model, res, batch, attn=attn).status == "PASS"


@pytest.mark.parametrize("spec,res", [(TINY, "4x64x64"), (TINY, "8x48x48"), (TINY_2D, "96")])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_memory_against_the_tracker(spec, res, batch, attn):
    from vitcost.analytic.memory import predict_memory
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build
    from vitcost.vocab import parse_res

    torch.set_num_threads(1)
    size = parse_res(res)
    net = build(spec, size, attn=attn).eval()
    measured = measure_forward_memory(net, torch.randn(batch, 3, *((size.frames,) if size.frames else ()), *size))
    pred = predict_memory(estimate(spec, size, batch), Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_training_step_against_flop_counter(attn):
    """Forward and backward per layer against FlopCounterMode (its grouped-conv weight-gradient defect, which
    the pooling convs meet, set apart as the check does for every family)."""
    from vitcost.measure.check import check_model

    r = check_model(TINY, "4x64x64", 2, attn=attn, mode="train", convention="torch")
    assert r.status == "PASS", r.first_mismatch


def test_training_step_memory_against_a_measured_step(capsys):
    import json

    code, out, _ = run(capsys, "profile", "--mode", "train", "-m", "mvit_b_16x4:dims=16-32-64-128,depths=1-2-2-1",
                       "-r", "4x64x64", "--batch", "2", "--device", "cpu", "-f", "json")
    assert code == 0
    row = json.loads(out)[0]
    assert row["status"] == "ok" and row["step_peak_ratio"] == pytest.approx(1.0, rel=0.10)
