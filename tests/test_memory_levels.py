"""Memory at two levels: live tensors (the tracker) and the allocator (torch.profiler's memory records,
which add the scratch buffers a kernel allocates inside itself). The profiler's figure against modules
worked out by hand; the CPU kernels' scratch rules against single kernels whose buffers are derived by
hand; the allocator-level prediction against the profiler on every family's reference net; the profile
rows and table that carry both levels."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vitcost import estimate
from vitcost.analytic.cost import AttnCall
from vitcost.analytic.liveness import PeakSteps, conv_scratch, flash_scratch
from vitcost.analytic.memory import predict_memory
from vitcost.errors import VitcostError
from vitcost.specs import BiFormerSpec, ConvNeXtSpec, MViTSpec, NATSpec, ResNetSpec, SwinSpec, SwinV2Spec
from vitcost.vocab import Kernel
from vitcost.zoo import get_preset

torch = pytest.importorskip("torch")

from vitcost.measure.memory import allocator_forward_peak, measure_forward_memory, track_forward  # noqa: E402
from vitcost.nets import build  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # the scratch buffers follow the thread count

F32 = 4




# --- the profiler's allocator figure, by hand -----------------------------------------------------------

class _NormOfTranspose(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(64)

    def forward(self, x):
        return self.norm(x.t())  # a strided [32, 64] view of the resident [64, 32] input


def test_profiler_sees_the_copy_a_layer_norm_makes_of_a_strided_input():
    # LayerNorm over 64 of a transposed [32, 64] view: the kernel copies the view to a contiguous buffer
    # (32*64 floats = 8192 B), then writes its output (8192 B) and a float32 mean and rstd per row
    # (2 * 32 * 4 = 256 B). The tracker sees the op's outputs only; the allocator sees the copy too.
    x = torch.randn(64, 32)
    assert track_forward(_NormOfTranspose(), x).peak == 8192 + 256
    assert allocator_forward_peak(_NormOfTranspose(), x) == 8192 + 8192 + 256


def test_profiler_and_tracker_agree_without_scratch():
    class Chain(torch.nn.Module):
        def forward(self, x):
            for _ in range(5):
                x = x + x  # (no Python scalar: the allocator would see its 4-byte tensor)
            return x

    x = torch.randn(1000)
    # each add holds the previous sum and the new one: 2 x 4000 B, with no kernel scratch
    assert allocator_forward_peak(Chain(), x) == track_forward(Chain(), x).peak == 2 * 1000 * F32


def test_measure_forward_memory_reports_both_levels():
    net, x = _NormOfTranspose(), torch.randn(64, 32)
    m = measure_forward_memory(net, x)
    assert (m.tensor_peak_bytes, m.allocator_peak_bytes) == (8448, 16640)
    assert "profiler" in m.allocator_method and "TorchDispatchMode" in m.method
    assert measure_forward_memory(net, x, allocator=False).allocator_peak_bytes is None


# --- the CPU kernels' scratch, by hand --------------------------------------------------------------------

class _Sdpa(torch.nn.Module):
    def forward(self, q):
        return torch.nn.functional.scaled_dot_product_attention(q, q, q)


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_flash_attention_scratch(threads):
    # q, k, v: [2, 3, 200, 32]. The output (2*3*200*32 floats = 153600 B) and the float32 log-sum-exp
    # (2*3*200*4 = 4800 B) are the op's outputs. Per thread the CPU flash kernel keeps, in float32, a
    # score block of 64 query rows (64 for 192 <= N < 768) by 200 key columns (the 512-column block cut to
    # 200), its row max and sum (64 each) and an output block 64 x 32: (12800 + 128 + 2048) * 4 = 59904 B.
    torch.set_num_threads(threads)
    q = torch.randn(2, 3, 200, 32)
    per_thread = (64 * 200 + 2 * 64 + 64 * 32) * F32
    assert track_forward(_Sdpa(), q).peak == 153600 + 4800
    assert allocator_forward_peak(_Sdpa(), q) == 153600 + 4800 + threads * per_thread
    assert flash_scratch(PeakSteps("cpu", threads), AttnCall(2, 3, 200, 200, 32), F32) == threads * per_thread
    assert flash_scratch(PeakSteps("cuda"), AttnCall(2, 3, 200, 200, 32), F32) == 0


def _conv_peak(conv, x):
    out = conv(x).numel() * F32
    return allocator_forward_peak(conv, x) - out, out


def test_cpu_conv_scratch_by_layout():
    peak = PeakSteps("cpu")
    # a 3x3 conv on a contiguous NCHW input reorders its input and weights:
    # in 64*20*20 floats = 102400 B, weights 64*64*9 floats = 147456 B
    conv, x = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False), torch.randn(1, 64, 20, 20)
    scratch, out = _conv_peak(conv, x)
    assert scratch == 102400 + 147456 == conv_scratch(peak, "conv", 64 * 400, 64 * 400, 64 * 64 * 9, F32)
    # a 1x1 conv on one thread needs none
    conv = torch.nn.Conv2d(64, 128, 1, bias=False)
    assert _conv_peak(conv, x)[0] == 0 == conv_scratch(peak, "pointwise", 64 * 400, 128 * 400, 64 * 128, F32)
    # a depthwise 7x7 conv on a channels-last view (ConvNeXt's layout) reorders its weights: 96*49 floats
    conv, x = torch.nn.Conv2d(96, 96, 7, padding=3, groups=96), torch.randn(1, 14, 14, 96).permute(0, 3, 1, 2)
    assert _conv_peak(conv, x)[0] == 96 * 49 * F32 == conv_scratch(peak, "depthwise", 0, 0, 96 * 49, F32,
                                                                     channels_last=True)
    # a 4x4 stride-4 stem on a 3-channel image: weights (96*3*16 floats = 18432 B) reordered, then the
    # output written through a second buffer of its size (96*56*56 floats), the larger of the two
    conv, x = torch.nn.Conv2d(3, 96, 4, stride=4), torch.randn(1, 3, 224, 224)
    assert _conv_peak(conv, x)[0] == 96 * 56 * 56 * F32 == conv_scratch(peak, "stem", 0, 96 * 56 * 56, 96 * 48, F32)
    assert conv_scratch(PeakSteps("cuda"), "conv", 1, 1, 1, F32) == 0


# --- the prediction at both levels against the reference nets, every family --------------------------------

FAMILIES = {
    # the stem conv's reordered weights hold the allocator peak of these small nets
    "vit": (replace(get_preset("vit_ti16").spec, depth=2), 64, "sdpa"),
    "sam": (replace(get_preset("sam_vit_b").spec, dim=64, depth=4, heads=2, window=4, global_blocks=(1, 3),
                    neck=32), 72, "sdpa"),
    "mixer": (replace(get_preset("mixer_s16").spec, depth=2, dim=64, tokens_hidden=32, channels_hidden=256), 64,
              "math"),
    # attention steps hold it: no scratch at the peak
    "pixel": (replace(get_preset("igpt_s").spec, dim=64, depth=2, heads=4), 16, "math"),
    "swin": (SwinSpec(embed_dim=16, depths=(2, 2), heads=(1, 2), window=4, num_classes=10), 52, "sdpa"),
    "swinv2": (SwinV2Spec(embed_dim=16, depths=(2, 2), heads=(1, 2), window=4, num_classes=10), 52, "math"),
    "mvit": (MViTSpec(dims=(16, 32), depths=(1, 2), heads=(1, 2), kv_stride=2, num_classes=10), 64, "math"),
    "nat": (NATSpec(embed_dim=16, depths=(2, 1, 1), heads=(1, 2, 4), kernel=5, num_classes=10), 64, "math"),
    "biformer": (BiFormerSpec(dims=(16, 32, 64), depths=(2, 1, 1), topks=(1, 2, 0), n_win=2, head_dim=8,
                              global_heads=2, num_classes=10), 52, "sdpa"),
    # the last stage's reordered conv weights hold it, far above the live peak
    "convnext": (ConvNeXtSpec(dims=(64, 128, 256, 512), depths=(1, 1, 1, 1), num_classes=10), 64, "math"),
    "resnet": (ResNetSpec(depths=(1, 1, 1, 1), num_classes=10), 64, "math"),
}
SCRATCH_BOUND = {"vit", "sam", "mixer", "convnext", "resnet"}


def _both(spec, res, attn, batch=2):
    net = build(spec, res, attn=attn).eval()
    measured = measure_forward_memory(net, torch.randn(batch, 3, res, res))
    return measured, predict_memory(estimate(spec, res, batch), Kernel(attn), "cpu", torch.get_num_threads())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_allocator_level_against_the_profiler(family):
    spec, res, attn = FAMILIES[family]
    measured, pred = _both(spec, res, attn)
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.tensor_peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at
    assert measured.allocator_peak_bytes == pytest.approx(pred.allocator_peak_bytes, rel=0.10), pred.allocator_peak_at
    assert pred.allocator_peak_bytes >= pred.activation_peak_bytes
    if family in SCRATCH_BOUND:  # the two levels differ here: a model without the scratch would fail above
        assert measured.allocator_peak_bytes > 1.2 * measured.tensor_peak_bytes


def test_allocator_level_on_two_threads():
    # on more than one thread the 1x1 convs write through an output buffer and the flash kernel keeps a
    # buffer per thread
    torch.set_num_threads(2)
    for family in ("resnet", "vit"):
        spec, res, attn = FAMILIES[family]
        measured, pred = _both(spec, res, attn)
        assert measured.allocator_peak_bytes == pytest.approx(pred.allocator_peak_bytes, rel=0.10), family


def test_levels_are_labelled_and_the_device_decides_the_scratch():
    est = estimate(FAMILIES["resnet"][0], 64, 2)
    cpu, cuda = predict_memory(est, device="cpu"), predict_memory(est, device="cuda")
    assert cpu.device == "cpu" and cuda.device == "cuda"
    assert cpu.activation_peak_bytes == cuda.activation_peak_bytes  # the live level is the device's business
    assert cuda.allocator_peak_bytes == cuda.activation_peak_bytes < cpu.allocator_peak_bytes  # no oneDNN on CUDA
    assert cpu.allocator_peak_at == "layer4.0.conv2"
    with pytest.raises(VitcostError, match="unknown device"):
        predict_memory(est, device="tpu")


# --- vitcost profile carries both levels ---------------------------------------------------------------

def test_profile_rows_and_table_carry_the_allocator_level():
    from vitcost.measure.profile import ProfileConfig, ProfileSession
    from vitcost.report.profile_tables import profile_cells

    session = ProfileSession(ProfileConfig(models=["vit_ti16"], res=[32], device="cpu", repeats=1, warmup=0,
                                           threads=1))
    (row,) = list(session.rows())
    assert row["status"] == "ok"
    assert row["measured_alloc_bytes"] == pytest.approx(row["predicted_alloc_bytes"], rel=0.10)
    assert row["alloc_ratio"] == pytest.approx(row["measured_alloc_bytes"] / row["predicted_alloc_bytes"])
    assert "profiler" in row["alloc_method"] and row["predicted_alloc_peak_at"]
    assert row["predicted_alloc_bytes"] >= row["predicted_mem_bytes"]
    header, cells = profile_cells([row])
    assert header[4:10] == ["live pred", "live meas", "ratio", "alloc pred", "alloc meas", "ratio"]
    assert cells[0][7] != "—" and cells[0][8] != "—"
