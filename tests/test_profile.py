"""`vitcost profile` and its parts: memory sizes, device presets, the roofline, timing, the sweep with its
out-of-memory guard, and the CLI's outputs and errors. CUDA-only checks skip without a GPU."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vitcost import Estimate, estimate
from vitcost.analytic.cost import Cost, Op
from vitcost.analytic.hardware import GIB, PRESETS, cpu_preset, get_hardware, parse_bytes, preset_for_device_name
from vitcost.analytic.roofline import roofline
from vitcost.cli import main
from vitcost.design import Design
from vitcost.errors import VitcostError
from vitcost.specs import ViTSpec
from vitcost.vocab import Dtype, Kernel

PUBLISHED_MD = Path(__file__).resolve().parent / "data" / "published.md"

REQUIRED = {"model", "family", "res", "batch", "dtype", "attn", "attn_backend", "device", "device_name",
            "torch_version", "threads", "status", "note", "macs", "flops", "predicted_time_s", "measured_time_s",
            "time_spread_s", "predicted_mem_bytes", "measured_mem_bytes", "mem_ratio", "predicted_attn_bytes",
            "measured_attn_bytes", "achieved_tflops", "peak_fraction"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device (the CUDA path of the profiler: "
                                                              "events, max_memory_allocated, flash/efficient SDPA)")

def _torch_or_skip():
    return pytest.importorskip("torch", reason="measuring needs torch")


# --- memory sizes and device presets -------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [("80GB", 80 * 10**9), ("141GiB", 141 * 2**30), ("512MiB", 512 * 2**20),
                                           ("1.5TB", 1_500_000_000_000), ("80", 80 * 10**9), (" 2 gib ", 2 * 2**30),
                                           ("64KiB", 65536)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "80 XB", "-5GB", "1e9", "eighty", "0B", "80GBs"])
def test_parse_bytes_rejects_junk(text):
    with pytest.raises(VitcostError):
        parse_bytes(text)


def _published_hardware() -> dict[str, list[str]]:
    rows = {}
    for line in PUBLISHED_MD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in ("H100 SXM", "H100 PCIe", "H200 SXM", "A100 80GB SXM"):
            rows[cells[0]] = cells
    return rows


def test_presets_match_the_published_hardware_table():
    table = _published_hardware()
    names = {"H100 SXM": "h100-sxm", "H100 PCIe": "h100-pcie", "H200 SXM": "h200", "A100 80GB SXM": "a100"}
    assert set(table) == set(names)
    for label, key in names.items():
        _, half, _tf32, fp32, mem, bw = table[label]
        hw = PRESETS[key]
        assert hw.peak("bf16") == hw.peak("fp16") == float(half) * 1e12
        assert hw.peak("fp32") == float(fp32) * 1e12
        assert hw.bandwidth == float(re.match(r"[\d.]+", bw).group()) * 1e12
        assert hw.memory == int(re.match(r"\d+", mem).group()) * GIB


def test_device_names_pick_presets():
    assert preset_for_device_name("NVIDIA H100 80GB HBM3") == "h100-sxm"
    assert preset_for_device_name("NVIDIA H100 PCIe") == "h100-pcie"
    assert preset_for_device_name("NVIDIA H200") == "h200"
    assert preset_for_device_name("NVIDIA A100-SXM4-80GB") == "a100"
    assert preset_for_device_name("Tesla T4") is None


def test_hardware_overrides_and_errors():
    # --peak-tflops sets the run's dtype's peak; the H100's other figures scale with it (989 : 67 datasheet ratio)
    hw = get_hardware("h100-sxm").override(peak_tflops=500, bandwidth=2e12, dtype="bf16")
    assert hw.peak("bf16") == hw.peak("fp16") == pytest.approx(500e12, rel=1e-15) and hw.bandwidth == 2e12
    assert hw.peak("fp32") == hw.vector_flops == pytest.approx(67e12 * 500 / 989, rel=1e-12)
    assert hw.label == "H100 SXM (bf16 peak 500 TFLOP/s, bandwidth 2 TB/s, overridden)"
    cpu = cpu_preset(4)
    assert cpu.indicative and cpu.peak("fp32") == 4 * 50e9
    with pytest.raises(VitcostError):
        get_hardware("tpu")
    with pytest.raises(VitcostError):
        get_hardware("h200").override(peak_tflops=-1)


# --- the roofline, worked by hand ------------------------------------------------------------------------

def _one_linear(rows: int, fin: int, fout: int, dtype: str = "bf16") -> Estimate:
    op = Op("fc", "linear", "mlp", Cost(macs=rows * fin * fout, eltwise=rows * fout, params=fin * fout + fout),
            rows * fout, inp=rows * fin)
    design = Design("one linear", ViTSpec(dim=8, depth=1, heads=1))
    return Estimate(design, (16, 16), 1, Dtype(dtype), Kernel.math, (op,))


def test_roofline_of_one_linear_by_hand():
    hw = get_hardware("h100-sxm")
    # big square GEMM: 8192 x 8192 x 8192 in bf16 is compute-bound on an H100
    r = roofline(_one_linear(8192, 8192, 8192), hw)
    compute = 2 * 8192**3 / 989e12 + 8192 * 8192 / 67e12  # 2 FLOPs per MAC on tensor cores; the bias add on FP32
    memory = (8192 * 8192 * 3 + 8192) * 2 / 3.35e12  # x, W, y and the bias, 2 bytes each
    assert r.time_s == pytest.approx(max(compute, memory), rel=1e-12)
    assert r.bound == "compute"
    # a skinny one (batch of 8 rows) is memory-bound: the weights dominate the traffic
    r = roofline(_one_linear(8, 4096, 4096), hw)
    assert r.bound == "memory"
    assert r.time_s == pytest.approx((8 * 4096 * 2 + 4096 * 4096 + 4096) * 2 / 3.35e12, rel=1e-12)


def test_roofline_achieved_throughput():
    hw = get_hardware("a100")
    r = roofline(_one_linear(4096, 4096, 4096), hw)
    tflops, frac = r.achieved(0.001)
    assert tflops == pytest.approx(2 * 4096**3 / 0.001 / 1e12)
    assert frac == pytest.approx(2 * 4096**3 / 0.001 / 312e12)


def test_fused_attention_moves_fewer_bytes():
    est = estimate("vit_b16", 1024, 1, "bf16")
    hw = get_hardware("h100-sxm")
    math_, fused = roofline(est, hw, Kernel.math), roofline(est, hw, Kernel.flash)
    assert fused.matmul_flops == math_.matmul_flops
    # the scores of one layer: 12 heads x 4097^2 elements x 2 bytes, written by q@k^T, read and written by
    # softmax, read by @v: the math path moves at least 4x that per layer more than the fused one
    scores = 12 * 4097**2 * 2
    assert math_.bytes - fused.bytes >= 12 * 4 * scores
    assert fused.time_s < math_.time_s


# --- timing ------------------------------------------------------------------------------------------------

def test_spread_is_the_interquartile_range():
    from vitcost.measure.timing import spread

    _torch_or_skip()
    assert spread([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(4.0 - 2.0)  # inclusive quartiles: 2 and 4
    assert spread([1.0, 3.0]) == 2.0 and spread([5.0]) == 0.0


def test_time_forward_records_threads_and_repeats():
    torch = _torch_or_skip()
    from vitcost.measure.timing import time_forward

    before = torch.get_num_threads()
    try:
        t = time_forward(torch.nn.Linear(8, 8), torch.randn(4, 8), warmup=1, repeats=3, threads=1)
    finally:
        torch.set_num_threads(before)
    assert t.threads == 1 and t.device == "cpu" and len(t.times_s) == 3 and t.warmup == 1
    assert t.min_s <= t.median_s <= t.max_s
    with pytest.raises(VitcostError):
        time_forward(torch.nn.Linear(8, 8), torch.randn(4, 8), repeats=0)


# --- the sweep ---------------------------------------------------------------------------------------------

def test_profile_cpu_rows(capsys):
    _torch_or_skip()
    code, out, err = run(capsys, "profile", "-m", "vit_ti16", "-r", "32", "48", "--device", "cpu", "--repeats", "2",
                         "--warmup", "1", "--threads", "1", "--dtype", "fp32", "-f", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 2
    for r in rows:
        assert REQUIRED <= set(r)
        assert r["status"] == "ok" and r["device"] == "cpu" and r["threads"] == 1
        assert r["device_name"] and r["torch_version"] and r["attn_backend"] == "math"
        assert r["measured_time_s"] > 0 and r["time_spread_s"] >= 0
        assert r["mem_ratio"] == pytest.approx(1.0, abs=0.10)
        assert r["measured_attn_bytes"] == r["predicted_attn_bytes"]
        assert r["achieved_tflops"] > 0 and r["peak_fraction"] > 0
    # 32x32 with patch 16: 4 patches + class token = 5 tokens, 3 heads, 12 layers, fp32
    assert rows[0]["measured_attn_bytes"] == 12 * 3 * 5 * 5 * 4


def test_profile_sdpa_records_the_kernel_that_ran(capsys):
    _torch_or_skip()
    code, out, err = run(capsys, "profile", "-m", "vit_ti16", "-r", "32", "--device", "cpu", "--repeats", "1",
                         "--warmup", "0", "--attn", "sdpa", "-f", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["attn"] == "sdpa" and row["attn_backend"] == "flash (cpu)"
    assert row["measured_attn_bytes"] == row["predicted_attn_bytes"] == 0
    # a backend this device lacks: skipped with a reason, not a crash
    code, out, _ = run(capsys, "profile", "-m", "vit_ti16", "-r", "32", "--device", "cpu", "--repeats", "1",
                       "--warmup", "0", "--attn", "efficient", "-f", "json")
    (row,) = json.loads(out)
    assert code == 0 and row["status"] == "skipped" and "efficient" in row["note"]


def test_oom_guard_skips_pixel_attention_at_512(capsys):
    """iGPT-S at 512x512: 262,144 tokens, so one layer's two [8, N, N] float32 score tensors (raw and
    softmax) need 2 * 8 * 262144^2 * 4 B = 8 TiB: skipped with the figure, nothing allocated."""
    _torch_or_skip()
    code, out, err = run(capsys, "profile", "-m", "igpt_s", "-r", "512", "--device", "cpu", "-f", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["status"] == "skipped" and row["measured_mem_bytes"] is None
    m = re.fullmatch(r"needs ([\d,.]+) GiB > ([\d,.]+) GiB free", row["note"])
    assert m, row["note"]
    needed_gib = float(m.group(1).replace(",", ""))
    assert needed_gib * 2**30 >= 2 * 8 * 262144**2 * 4 * 0.999
    assert needed_gib == pytest.approx(row["predicted_total_bytes"] / 2**30, rel=0.01)


def test_real_oom_is_caught_and_the_sweep_goes_on(monkeypatch):
    _torch_or_skip()
    import vitcost.measure.memory as memory
    from vitcost.measure.profile import ProfileConfig, ProfileSession

    real = memory.measure_forward_memory
    calls = []

    def flaky(net, x, context=None):
        calls.append(tuple(x.shape))
        if len(calls) == 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return real(net, x, context)

    monkeypatch.setattr(memory, "measure_forward_memory", flaky)
    rows = list(ProfileSession(ProfileConfig(models=["vit_ti16"], res=[32, 48], device="cpu", repeats=1,
                                             warmup=0)).rows())
    assert [r["status"] for r in rows] == ["oom", "ok"]
    assert "can't allocate memory" in rows[0]["note"]


def test_predict_only_runs_nothing_and_imports_no_torch():
    code = ("import sys, json, io, contextlib\n"
            "from vitcost.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try:\n"
            "        main(['profile', '-m', 'vit_b16', 'swin_t', '-r', '224', '1024', '--predict-only',\n"
            "              '--hardware', 'h100-sxm', '--dtype', 'bf16', '-f', 'json'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0\n"
            "rows = json.loads(buf.getvalue())\n"
            "print('torch' in sys.modules, len(rows), {r['status'] for r in rows}, rows[0]['memory_wall_res'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and out[1] == "4"
    assert "{'predicted'}" in " ".join(out[2:3])
    assert int(out[3]) > 1024  # ViT-B/16 in bf16 fits well beyond 1024 px in 80 GiB


def test_predict_only_table_shows_the_memory_wall(capsys):
    code, out, err = run(capsys, "profile", "-m", "vit_b16", "-r", "224", "--predict-only", "--hardware", "h200",
                         "--device-memory", "141GB", "--dtype", "bf16")
    assert code == 0, err
    assert "memory wall" in out and "vit_b16" in out and "H200" in out


def test_csv_and_markdown_outputs(capsys, tmp_path):
    target = tmp_path / "p.csv"
    code, out, _ = run(capsys, "profile", "-m", "mixer_s16", "-r", "224", "--predict-only", "--hardware", "a100",
                       "-f", "csv", "-o", str(target))
    assert code == 0 and out == ""
    (row,) = list(csv.DictReader(io.StringIO(target.read_text())))
    assert REQUIRED <= set(row) and row["status"] == "predicted" and row["predicted_attn_bytes"] == "0"
    code, out, _ = run(capsys, "profile", "-m", "mixer_s16", "-r", "224", "--predict-only", "-f", "markdown")
    assert code == 0 and out.startswith("**vitcost profile — predicted for") and "\n| model |" in out


@pytest.mark.parametrize("argv,phrase", [
    (["--device-memory", "eighty"], "memory size"),
    (["--device-memory", "80XB"], "memory size"),
    (["--attn", "fast"], "--attn"),
    (["--batch", "0"], "batch"),
    (["--hardware", "tpu"], "--hardware"),
    (["--device", "gpu"], "--device"),
    (["-m", "vit_b17"], "unknown model"),
    (["-r", "abc"], "resolution"),
    (["--peak-tflops", "-3"], "peak"),
    (["--repeats", "0"], "repeats"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, phrase):
    code, out, err = run(capsys, "profile", "--predict-only", *argv)
    assert code == 2 and out == ""
    assert err.startswith("vitcost: error:") and err.count("\n") == 1 and phrase in err


def test_unwritable_output_leaves_no_file(capsys, tmp_path):
    target = tmp_path / "missing" / "rows.json"
    code, _, err = run(capsys, "profile", "-m", "vit_b16", "--predict-only", "-f", "json", "-o", str(target))
    assert code == 2 and "does not exist" in err and not target.exists()


def test_help_has_examples(capsys):
    code, out, _ = run(capsys, "profile", "--help")
    assert code == 0
    for word in ("--attn", "--device-memory", "--predict-only", "--peak-tflops", "Examples"):
        assert word in out


# --- CUDA ----------------------------------------------------------------------------------------------

@needs_cuda
def test_cuda_peak_is_the_allocator_figure_minus_resident():
    import torch

    from vitcost.measure.memory import cuda_forward_peak

    net, x = torch.nn.Linear(1024, 4096).cuda(), torch.randn(256, 1024, device="cuda")
    net(x)  # cuBLAS workspace allocated before the measured forward
    peak = cuda_forward_peak(net, x)
    assert peak >= 256 * 4096 * 4  # the output, rounded up by the allocator
    assert peak < 256 * 4096 * 4 + 64 * 2**20


@needs_cuda
@pytest.mark.parametrize("attn", ["math", "flash"])
def test_cuda_profile_row(capsys, attn):
    code, out, err = run(capsys, "profile", "-m", "vit_ti16", "-r", "224", "--device", "cuda", "--dtype", "bf16",
                         "--attn", attn, "--repeats", "3", "-f", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["status"] == "ok" and row["device"] == "cuda" and "max_memory_allocated" in row["mem_method"]
    assert row["attn_backend"] == ("math" if attn == "math" else "flash")
    assert row["mem_ratio"] == pytest.approx(1.0, abs=0.10)
    assert row["measured_attn_bytes"] == row["predicted_attn_bytes"]


def test_device_memory_takes_one_size_for_profile(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "-m", "vit_b16", "-r", "224", "--predict-only", "--device-memory", "80GB", "141GB"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "takes one size" in err
