"""One forward-time figure everywhere it is shown: compare's `time_s`, profile's `predicted_time_s` and the
library row come from `roofline.forward_time`, which takes the per-op time model where the device profile
carries its fitted figures and the run is autocast over fp32 weights (the regime they were fitted in),
and the roofline otherwise."""

from __future__ import annotations

import json

import pytest

import vitcost
from vitcost import estimate
from vitcost.analytic.hardware import get_hardware
from vitcost.analytic.roofline import roofline
from vitcost.analytic.time_model import forward_time as per_op
from vitcost.analytic.time_model import time_device
from vitcost.cli import main


def run_json(capsys, *argv: str) -> list[dict]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, _ = capsys.readouterr()
    assert exc.value.code == 0
    return json.loads(out)


def test_compare_profile_and_library_show_one_time(capsys):
    args = ["-m", "swin_t", "-r", "224", "--batch", "256", "--dtype", "fp16", "--hardware", "rtx4090"]
    est = estimate("swin_t", 224, 256, "fp16", "math", amp=True)
    expected = per_op(est, time_device(get_hardware("rtx4090")), amp=True)
    row = run_json(capsys, "compare", *args, "--amp", "-f", "json")[0]
    assert row["time_model"] == "per-op" and row["time_s"] == expected
    assert row["images_per_s"] == 256 / expected
    prof = run_json(capsys, "profile", *args, "--amp", "--predict-only", "-f", "json")[0]
    assert prof["predicted_time_s"] == expected and prof["time_model"] == "per-op"
    lib = vitcost.compare("swin_t", res=224, batch=256, dtype="fp16", hardware="rtx4090", amp=True)
    assert lib["time_s"].iloc[0] == expected


def test_outside_the_fitted_regime_the_roofline(capsys):
    """Pure 16-bit inference (no --amp), and a profile without fitted figures (the CPU's), take the roofline."""
    row = run_json(capsys, "compare", "-m", "swin_t", "-r", "224", "--dtype", "fp16", "--hardware", "rtx4090",
                   "-f", "json")[0]
    assert row["time_model"] == "roofline"
    assert row["time_s"] == roofline(estimate("swin_t", 224, 1, "fp16"), get_hardware("rtx4090")).time_s
    cpu = run_json(capsys, "compare", "-m", "swin_t", "-r", "224", "--dtype", "bf16", "--amp", "--hardware", "cpu",
                   "-f", "json")[0]
    assert cpu["time_model"] == "roofline"


def test_below_the_measured_launches_the_roofline(capsys):
    """A forward whose median matmul launch is smaller than any measured row's (2e10 FLOPs) takes the
    roofline: ViT-B/16 at batch 1 (its largest GEMM, an MLP layer: 197 x 768 x 3072 x 2 = 9.3e8 FLOPs)."""
    from vitcost.analytic.time_model import MEASURED_MIN_MATMUL_FLOPS, in_measured_regime

    assert 197 * 768 * 3072 * 2 < MEASURED_MIN_MATMUL_FLOPS
    small = estimate("vit_b16", 224, 1, "fp16", "sdpa", amp=True)
    assert not in_measured_regime(small)
    row = run_json(capsys, "compare", "-m", "vit_b16", "-r", "224", "--dtype", "fp16", "--amp", "--attn", "sdpa",
                   "--hardware", "rtx3090", "-f", "json")[0]
    assert row["time_model"] == "roofline"
    assert row["time_s"] == roofline(small, get_hardware("rtx3090")).time_s
    # at timm's batch (1024) the same design is in the measured regime
    assert in_measured_regime(estimate("vit_b16", 224, 1024, "fp16", "sdpa", amp=True))


# timm's published RTX 4090 eager fp16-autocast throughputs (benchmarks/data/timm_gpu_infer.csv, from
# results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv): rows the time model was not fitted on.
HELD_OUT = [("resnet50", 160, 8305.45), ("convnext_tiny", 288, 2919.6), ("mvitv2_t", 224, 2162.81)]


@pytest.mark.parametrize("design,res,measured", HELD_OUT)
def test_held_out_rows_within_25_percent(design, res, measured):
    row = vitcost.compare(design, res=res, batch=1024, dtype="fp16", hardware="rtx4090", amp=True).iloc[0]
    assert row["images_per_s"] == pytest.approx(measured, rel=0.25)
