"""Device profiles as data: the built-in profiles against their vendors' figures, profile files (the
user's directory, bad files), --hardware and the time columns, --peak-tflops/--bandwidth, and --amp."""

from __future__ import annotations

import json
import math

import pytest

from vitcost import estimate
from vitcost.analytic.hardware import (
    GIB,
    builtin_names,
    cpu_preset,
    get_hardware,
    known_hardware,
    preset_for_device_name,
    profile_from_dict,
    profile_toml,
)
from vitcost.analytic.roofline import roofline
from vitcost.analytic.savings import train_roofline
from vitcost.errors import VitcostError
from vitcost.report.rows import compare_rows, estimate_row, train_rows

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


def run(capsys, *argv):
    from vitcost.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# --- the built-in profiles against their vendors' documents ---------------------------------------------------

# profile -> (FP32 TFLOPS, dense FP16/BF16 tensor TFLOPS with the fp32 accumulate torch uses, memory in the
# marketed GB (kept as GiB of chips), bandwidth TB/s), as printed in each vendor document:
PUBLISHED = {
    # NVIDIA H100 Tensor Core GPU datasheet, SXM5: FP32 67; BF16/FP16 1,979 with sparsity (989 dense); 80 GB; 3.35 TB/s
    "h100-sxm": (67, 989, 80, 3.35),
    # same datasheet, PCIe: FP32 51; 1,513 with sparsity (756 dense); 80 GB; 2 TB/s
    "h100-pcie": (51, 756, 80, 2.0),
    # NVIDIA H200 datasheet, SXM: FP32 67; 1,979 with sparsity (989 dense); 141 GB; 4.8 TB/s
    "h200": (67, 989, 141, 4.8),
    # NVIDIA A100 datasheet, 80GB SXM: FP32 19.5; BF16/FP16 312 (624 with sparsity); 80 GB; 2,039 GB/s
    "a100": (19.5, 312, 80, 2.04),
    # NVIDIA L4 datasheet: FP32 30.3; BF16/FP16 242 with sparsity (121 dense); 24 GB; 300 GB/s
    "l4": (30.3, 121, 24, 0.3),
    # NVIDIA L40S datasheet: FP32 91.6; BF16/FP16 362.05 | 733 with sparsity; 48 GB; 864 GB/s
    "l40s": (91.6, 362.05, 48, 0.864),
    # Ampere GA102 whitepaper, Appendix A, RTX 3090: FP32 35.6; FP16 tensor with FP32 accumulate 71 | 142*;
    # 24 GB GDDR6X; 936 GB/s
    "rtx3090": (35.6, 71, 24, 0.936),
    # Ada Lovelace whitepaper, Appendix A, RTX 4090: FP32 82.6; FP16 tensor with FP32 accumulate 165.2 | 330.4*;
    # 24 GB GDDR6X; 1,008 GB/s
    "rtx4090": (82.6, 165.2, 24, 1.008),
    # RTX Blackwell whitepaper, Appendix A, RTX 5090: FP32 104.8; FP16 tensor with FP32 accumulate 209.5 | 419*;
    # 32 GB GDDR7; 1,792 GB/s
    "rtx5090": (104.8, 209.5, 32, 1.792),
    # RTX PRO 6000 Blackwell Max-Q datasheet: FP32 110; 3,511 AI TOPS (FP4, sparse) -> /2 dense, /2 FP8, /2 FP16
    # = 438.875, quoted 438.9; 96 GB GDDR7; 1,792 GB/s
    "rtx-pro-6000-maxq": (110, 438.9, 96, 1.792),
}


def test_every_gpu_profile_is_checked_here():
    assert set(builtin_names()) == {*PUBLISHED, "cpu"}


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_profile_matches_its_vendor_figures(key):
    fp32, half, gb, tbps = PUBLISHED[key]
    hw = get_hardware(key)
    assert hw.peak("fp32") == pytest.approx(fp32 * 1e12, rel=1e-12)
    assert hw.peak("fp16") == hw.peak("bf16") == pytest.approx(half * 1e12, rel=1e-12)
    assert hw.vector_flops == pytest.approx(fp32 * 1e12, rel=1e-12)  # elementwise work on the FP32 pipes
    assert hw.memory == gb * GIB
    assert hw.bandwidth == pytest.approx(tbps * 1e12, rel=1e-12)
    assert not hw.indicative
    # each figure's source line quotes the number the profile holds
    for figure, number in (("fp32", fp32), ("fp16", half), ("bf16", half), ("vector", fp32)):
        assert f"{number:g}" in hw.sources[figure], (figure, hw.sources[figure])
    assert f"{gb} GB" in hw.sources["memory"]
    assert all(s.startswith(("vendor:", "derived:", "assumed:", "fitted:")) for s in hw.sources.values())


def test_geforce_profiles_take_the_fp32_accumulate_rate():
    # GeForce cards run fp16 tensor math with fp32 accumulate at half their fp16-accumulate rate; torch's
    # fp16/bf16 matmuls accumulate in fp32, so the profile holds the lower figure and says why
    for key, fp16_accumulate in (("rtx3090", 142), ("rtx4090", 330.3), ("rtx5090", 419)):
        hw = get_hardware(key)
        assert hw.peak("fp16") == pytest.approx(fp16_accumulate / 2 * 1e12, rel=2e-3)
        assert "FP32 Accumulate" in hw.sources["fp16"] and "half" in hw.sources["fp16"]


def test_the_pro_6000_figure_is_derived_and_says_so():
    hw = get_hardware("rtx-pro-6000-maxq")
    assert hw.sources["fp16"].startswith("derived:") and "3,511" in hw.sources["fp16"]
    assert hw.peak("fp16") == pytest.approx(3511e12 / 8, rel=1e-3)


def test_cpu_profile_is_indicative_and_scales_with_threads():
    # 50 GFLOP/s and 5 GB/s per thread, the bandwidth capped at 40 GB/s
    one, four, sixteen = cpu_preset(1), cpu_preset(4), cpu_preset(16, memory=64 * GIB)
    assert one.indicative and "assumed" in one.sources["fp32"]
    assert four.peak("fp32") == four.peak("bf16") == four.vector_flops == 4 * 50e9
    assert four.bandwidth == 4 * 5e9 and sixteen.bandwidth == 40e9
    assert sixteen.memory == 64 * GIB and one.memory == 0
    assert four.name == "CPU (4 threads)"


def test_device_names_pick_the_new_profiles():
    assert preset_for_device_name("NVIDIA GeForce RTX 4090") == "rtx4090"
    assert preset_for_device_name("NVIDIA GeForce RTX 3090") == "rtx3090"
    assert preset_for_device_name("NVIDIA GeForce RTX 3090 Ti") is None
    assert preset_for_device_name("NVIDIA GeForce RTX 5090") == "rtx5090"
    assert preset_for_device_name("NVIDIA L4") == "l4"
    assert preset_for_device_name("NVIDIA L40S") == "l40s"
    assert preset_for_device_name("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition") == "rtx-pro-6000-maxq"


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_written_profile_reads_back_the_same(key):
    hw = get_hardware(key)
    back = profile_from_dict(tomllib.loads(profile_toml(hw)), key, key)
    assert back.matmul_flops == pytest.approx(hw.matmul_flops, rel=1e-15)
    assert (back.name, back.memory, back.sources, back.indicative) == (hw.name, hw.memory, hw.sources, hw.indicative)
    assert back.bandwidth == pytest.approx(hw.bandwidth, rel=1e-15)
    assert back.launch_overhead == pytest.approx(hw.launch_overhead, rel=1e-15)


# --- profile files: the user's directory and bad files ------------------------------------------------------

GOOD = """
name = "Lab card"
[memory]
gib = 16
source = "vendor: a datasheet"
[bandwidth]
tb_per_s = 0.5
source = "vendor: a datasheet"
[vector]
tflops = 10
source = "vendor: a datasheet"
[matmul.fp32]
tflops = 10
source = "vendor: a datasheet"
[matmul.fp16]
tflops = 40
source = "vendor: a datasheet"
[matmul.bf16]
tflops = 40
source = "vendor: a datasheet"
"""


def test_user_profile_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    devices = tmp_path / "vitcost" / "devices"
    devices.mkdir(parents=True)
    (devices / "lab.toml").write_text(GOOD)
    assert "lab" in known_hardware()
    hw = get_hardware("lab")
    assert (hw.name, hw.memory, hw.peak("fp16"), hw.bandwidth) == ("Lab card", 16 * GIB, 40e12, 0.5e12)
    code, out, _ = run(capsys, "hardware", "-f", "json")
    rows = {r["hardware"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {*PUBLISHED, "cpu", "lab"}
    assert rows["lab"]["fp16_tflops"] == 40 and rows["lab"]["sources"]["memory"] == "vendor: a datasheet"
    code, out, _ = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "--hardware", "lab", "-f", "json")
    assert code == 0 and json.loads(out)[0]["hardware"] == "Lab card"


@pytest.mark.parametrize("edit,phrase", [
    (lambda t: t + "\nname = [", "not valid TOML"),
    (lambda t: t.replace('[bandwidth]\ntb_per_s = 0.5\nsource = "vendor: a datasheet"\n', ""), "missing [bandwidth]"),
    (lambda t: t.replace('name = "Lab card"', ""), "missing `name`"),
    (lambda t: t.replace("gib = 16", "gib = 0"), "positive finite"),
    (lambda t: t.replace("tb_per_s = 0.5", "tb_per_s = -0.5"), "positive finite"),
    (lambda t: t.replace("tflops = 40", "tflops = inf", 1), "positive finite"),
    (lambda t: t.replace("tflops = 10", "tflops = nan", 1), "positive finite"),
    (lambda t: t.replace("tflops = 10", 'tflops = "ten"', 1), "positive finite"),
    (lambda t: t.replace('[vector]\ntflops = 10\nsource = "vendor: a datasheet"', "[vector]\ntflops = 10"),
     "needs a source"),
    (lambda t: "colour = 3\n" + t, "unknown field 'colour'"),
    (lambda t: t.replace("[matmul.bf16]", "[matmul.fp8]"), "missing [matmul.bf16]"),
])
def test_bad_profile_is_one_line_and_exit_2(capsys, tmp_path, edit, phrase):
    path = tmp_path / "card.toml"
    path.write_text(edit(GOOD))
    for argv in (["compare", "-m", "vit_ti16", "-r", "64"], ["savings", "vit_ti16", "-r", "64"],
                 ["profile", "-m", "vit_ti16", "-r", "64", "--predict-only"]):
        code, out, err = run(capsys, *argv, "--hardware", str(path))
        assert code == 2 and out == "", argv
        assert err.startswith("vitcost: error:") and err.count("\n") == 1 and phrase in err, err


def test_unknown_hardware_lists_the_known_ones(capsys, tmp_path):
    code, _, err = run(capsys, "compare", "-m", "vit_ti16", "--hardware", "tpu")
    assert code == 2 and err.count("\n") == 1
    assert all(k in err for k in (*PUBLISHED, "cpu"))
    code, _, err = run(capsys, "compare", "-m", "vit_ti16", "--hardware", str(tmp_path / "none.toml"))
    assert code == 2 and "does not exist" in err
    with pytest.raises(VitcostError, match="rtx4090"):
        get_hardware("rtx-4090")


# --- --hardware: time and throughput ------------------------------------------------------------------------

def test_compare_time_columns(capsys):
    code, out, _ = run(capsys, "compare", "-m", "vit_b16", "swin_t", "-r", "224", "--batch", "8", "--dtype", "bf16",
                       "--hardware", "l40s", "-f", "json")
    rows = json.loads(out)
    assert code == 0
    for r in rows:
        t = roofline(estimate(r["model"], 224, 8, "bf16"), get_hardware("l40s")).time_s
        assert r["hardware"] == "L40S" and r["time_s"] == t and r["images_per_s"] == pytest.approx(8 / t)
    code, out, _ = run(capsys, "compare", "-m", "vit_b16", "-r", "224", "--hardware", "l40s")
    assert code == 0 and "img/s" in out and "on L40S" in out
    # without --hardware: no time figures
    code, out, _ = run(capsys, "compare", "-m", "vit_b16", "-r", "224", "-f", "json")
    assert "time_s" not in json.loads(out)[0] and "img/s" not in run(capsys, "compare", "-m", "vit_b16")[1]


def test_library_rows_carry_the_time_fields():
    import vitcost

    df = vitcost.compare("vit_s16", [224, 384], batch=4, hardware="h200")
    assert list(df["hardware"]) == ["H200 SXM"] * 2
    assert (df["images_per_s"] * df["time_s"]).tolist() == pytest.approx([4, 4])
    row = estimate_row(estimate("vit_s16", 224, 4), hardware=get_hardware("a100"))
    assert row["time_s"] == roofline(estimate("vit_s16", 224, 4), get_hardware("a100")).time_s


def test_train_mode_shows_the_step_time(capsys):
    code, out, _ = run(capsys, "compare", "-m", "vit_s16", "-r", "224", "--mode", "train", "--batch", "16",
                       "--dtype", "bf16", "--hardware", "h100-sxm", "-f", "json")
    (row,) = json.loads(out)
    from vitcost.analytic.train_memory import train_memory

    est = estimate("vit_s16", 224, 16, "bf16")
    t = train_roofline(est, get_hardware("h100-sxm"), train_memory(est).recompute)
    assert code == 0 and row["time_s"] == t and row["images_per_s"] == pytest.approx(16 / t)
    assert row["precision"] == "autocast"


def test_overrides_scale_every_dtype_and_name_the_profile(capsys):
    code, out, _ = run(capsys, "compare", "-m", "vit_b16", "-r", "224", "--dtype", "bf16", "--hardware", "rtx4090",
                       "--peak-tflops", "330.4", "--bandwidth", "2", "-f", "json")
    (row,) = json.loads(out)
    assert code == 0 and row["hardware"] == "RTX 4090 (bf16 peak 330.4 TFLOP/s, bandwidth 2 TB/s, overridden)"
    hw = get_hardware("rtx4090").override(330.4, 2e12, "bf16")
    assert hw.peak("fp32") == hw.vector_flops == pytest.approx(82.6e12 * 2, rel=1e-12)  # 330.4 / 165.2 = 2
    assert row["time_s"] == roofline(estimate("vit_b16", 224, 1, "bf16"), hw).time_s
    code, _, err = run(capsys, "compare", "-m", "vit_b16", "--bandwidth", "2")
    assert code == 2 and "--hardware" in err


def test_savings_and_profile_take_profiles(capsys, tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text(GOOD)
    code, out, _ = run(capsys, "savings", "vit_s16", "--hardware", str(path), "-f", "json")
    assert code == 0 and json.loads(out)[0]["time_s"] > 0
    code, out, _ = run(capsys, "savings", "vit_s16", "--hardware", "rtx5090")
    assert code == 0 and "roofline on RTX 5090" in out
    code, out, _ = run(capsys, "profile", "-m", "vit_s16", "-r", "224", "--predict-only", "--hardware", "l4",
                       "--dtype", "bf16", "--peak-tflops", "60.5", "-f", "json")
    (row,) = json.loads(out)
    assert code == 0 and row["hardware"] == "L4 (bf16 peak 60.5 TFLOP/s, overridden)"
    assert row["peak_tflops"] == pytest.approx(60.5) and row["device_memory_bytes"] == 24 * GIB


def test_report_draws_one_memory_line_per_profile(capsys, tmp_path):
    target = tmp_path / "r.html"
    code, _, _ = run(capsys, "report", "-m", "vit_ti16", "-r", "224", "512", "--no-train", "--hardware", "rtx4090",
                     "l40s", "-o", str(target))
    page = target.read_text()
    assert code == 0 and "RTX 4090 24 GiB" in page and "L40S 48 GiB" in page
    assert "H200 141 GB" not in page  # the default lines are left out when profiles are given
    assert "--hardware rtx4090 l40s" in page


# --- --amp: autocast over fp32 weights ----------------------------------------------------------------------

def test_amp_with_fp32_is_exit_2(capsys):
    for argv in (["compare", "-m", "vit_ti16"], ["compare", "-m", "vit_ti16", "--mode", "train"],
                 ["profile", "-m", "vit_ti16", "--predict-only"]):
        code, out, err = run(capsys, *argv, "--amp", "--dtype", "fp32")
        assert code == 2 and out == "" and err.count("\n") == 1 and "--amp" in err


def test_amp_rows_give_no_activation_memory(capsys):
    code, out, _ = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "--dtype", "fp16", "--amp", "-f", "json")
    (row,) = json.loads(out)
    assert code == 0 and row["amp"] is True
    assert row["activation_peak_bytes"] is None and row["attn_matrix_bytes"] is None
    code, out, _ = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "--dtype", "fp16", "--amp")
    assert code == 0 and "fp16 autocast (fp32 weights)" in out and "no figure rather than a wrong one" in out
    with pytest.raises(VitcostError, match="autocast"):
        _ = estimate("vit_ti16", 224, 1, "bf16", amp=True).activation_peak_bytes


def test_profile_amp_weights_and_input_are_fp32(capsys):
    code, out, _ = run(capsys, "profile", "-m", "vit_ti16", "-r", "224", "--batch", "2", "--predict-only", "--dtype",
                       "bf16", "--amp", "--hardware", "a100", "-f", "json")
    (row,) = json.loads(out)
    est = estimate("vit_ti16", 224, 2)
    assert code == 0 and row["weights_bytes"] == est.params * 4 and row["input_bytes"] == 2 * 3 * 224 * 224 * 4
    assert row["predicted_mem_bytes"] is None and row["predicted_total_bytes"] is None
    assert row["memory_wall_res"] is None


def test_amp_roofline_bytes_by_hand():
    """ViT-Ti/16 at 224 under bf16 autocast on a GPU profile, op by op from the rule in AutocastBytes."""
    est = estimate("vit_ti16", 224, 1, "bf16", amp=True)
    ops = {(o.path, o.kind): o for o in roofline(est, get_hardware("a100")).ops}
    tokens, dim, hidden = 197, 192, 768
    image = 3 * 224 * 224
    # patch embedding: reads the fp32 image, writes 16-bit, its fp32 weights cast (4 + 2 + 2 bytes)
    conv_params = 192 * 3 * 16 * 16 + 192
    assert ops["patch_embed.proj", "conv"].bytes == image * 4 + 196 * dim * 2 + conv_params * 8
    # + the fp32 position embedding: an add, charged at its fp32 output's width for both operands, writes fp32
    assert ops["", "add"].bytes == 2 * tokens * dim * 4 + tokens * dim * 4
    # LayerNorm reads the fp32 stream and writes fp32 (CUDA's autocast fp32 list); gamma, beta fp32
    assert ops["blocks.0.norm1", "layer_norm"].bytes == tokens * dim * 4 * 2 + 2 * dim * 4
    # qkv reads the fp32 norm output, writes 16-bit
    assert ops["blocks.0.attn.qkv", "linear"].bytes == tokens * dim * 4 + 3 * tokens * dim * 2 + (
        dim * 3 * dim + 3 * dim) * 8
    # fc2 reads GELU's 16-bit output, writes 16-bit
    assert ops["blocks.0.mlp.fc2", "linear"].bytes == tokens * hidden * 2 + tokens * dim * 2 + (
        hidden * dim + dim) * 8
    # the residual add: the 16-bit branch and the fp32 stream, charged at the wider width, written fp32
    assert ops["blocks.0", "add"].bytes == 2 * tokens * dim * 4 + tokens * dim * 4
    # softmax: 16-bit scores in, fp32 probabilities out (3 heads of 197 x 197)
    scores = 3 * tokens * tokens
    assert ops["blocks.0.attn", "softmax"].bytes == scores * 2 + scores * 4
    # the whole forward sits between pure bf16 and fp32
    pure, full = (roofline(estimate("vit_ti16", 224, 1, dt), get_hardware("a100")).bytes for dt in ("bf16", "fp32"))
    assert pure < roofline(est, get_hardware("a100")).bytes < full


def test_train_no_amp_is_pure_16_bit_training(capsys):
    rows = {}
    for flag in ("--amp", "--no-amp", None):
        code, out, _ = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "--mode", "train", "--dtype", "bf16",
                           *([flag] if flag else []), "-f", "json")
        assert code == 0
        rows[flag] = json.loads(out)[0]
    assert rows["--amp"] == rows[None] and rows[None]["precision"] == "autocast"
    assert rows["--no-amp"]["precision"] == "half"
    params = rows[None]["params"]
    assert rows["--no-amp"]["memory"]["weights"] == 2 * params and rows[None]["memory"]["weights"] == 4 * params
    half = train_rows([estimate("vit_ti16", 224, 1, "bf16")], precision="half")[0]
    assert half["memory"] == rows["--no-amp"]["memory"]


def test_compare_rows_amp_time_is_finite():
    ests = [estimate(m, 224, 4, "fp16", amp=True) for m in ("swin_t", "resnet50", "convnext_t", "mixer_s16")]
    rows = compare_rows(ests, hardware=get_hardware("rtx3090"))
    assert all(math.isfinite(r["time_s"]) and r["images_per_s"] > 0 for r in rows)


def test_hardware_command_prints_a_usable_profile(capsys, tmp_path):
    code, out, _ = run(capsys, "hardware", "l4")
    path = tmp_path / "mine.toml"
    path.write_text(out)
    mine, l4 = get_hardware(str(path)), get_hardware("l4")
    assert code == 0 and (mine.name, mine.memory, mine.sources) == (l4.name, l4.memory, l4.sources)
    assert mine.matmul_flops == pytest.approx(l4.matmul_flops, rel=1e-15)
    code, out, _ = run(capsys, "hardware", "cpu")  # per-thread figures: the file as written
    assert code == 0 and "per_thread = true" in out
    code, out, _ = run(capsys, "hardware")
    assert code == 0 and "rtx-pro-6000-maxq" in out and "derived:" in out
