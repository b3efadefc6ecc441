"""`vitcost calibrate`: the fit on synthetic timings (expected figures derived by hand below), the
profile's round trip through --hardware, the bad inputs, and one real (short) run on this machine."""

from __future__ import annotations

import math

import pytest

from vitcost.analytic.calibration import Sample, fit_device, measured_peaks
from vitcost.analytic.time_model import Kernel
from vitcost.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _k(cls: str, flops: float = 0.0, nbytes: float = 1e3, other: float = 0.0, dtype: str = "fp32") -> Kernel:
    return Kernel(cls, cls, flops, other, nbytes, dtype, cls)


def synthetic() -> list[Sample]:
    """Timings a device with these figures would give (hand-derived in test_fit_recovers_hand_figures)."""
    return [
        Sample("launch", _k("memory", nbytes=12), 1e-6, launch=True),
        Sample("add big", _k("memory", nbytes=1e7), 1.0e-3),
        Sample("add small", _k("memory", nbytes=1e6), 0.19e-3),
        Sample("gelu", _k("memory", nbytes=1e3, other=1e8), 10e-3),
        Sample("gemm small", _k("gemm", flops=1e8), 1.5e-3),
        Sample("gemm big", _k("gemm", flops=1e9), 10.5e-3),
    ]


def test_fit_recovers_hand_figures():
    # Peaks are the best measured rates: bandwidth = 1e7 B / 1 ms = 1e10 B/s (the small add: 5.3e9);
    # vector = 1e8 / 10 ms = 1e10 FLOP/s; fp32 peak = 1e9 / 10.5 ms = 9.524e10 FLOP/s; floor 1 us.
    peaks, vector, bandwidth, floor = measured_peaks(synthetic())
    assert bandwidth == pytest.approx(1e10) and vector == pytest.approx(1e10) and floor == 1e-6
    assert peaks == {"fp32": pytest.approx(1e9 / 10.5e-3)}
    dev = fit_device("synthetic", synthetic())
    # gemm: t = (w + h) / (P f) through both points: slope (10.5 - 1.5) ms / 9e8 FLOPs = 1e-11 s/FLOP,
    # so P f = 1e11 and f = 1e11 / 9.524e10 = 1.05; h = 1.5e-3 * 1e11 - 1e8 = 5e7 FLOPs.
    assert dev.efficiency["gemm"].fraction == pytest.approx(1.05, rel=1e-4)
    assert dev.efficiency["gemm"].half_work == pytest.approx(5e7, rel=1e-3)
    # memory: slope (1.0 - 0.19) ms / 9e6 B = 9e-11 s/B, so B f = 1.111e10 and f = 1/0.9;
    # h = 1e-3 * 1.111e10 - 1e7 = 1.111e6 B. The GELU sample is vector-bound (1e8 / 1e10 = 10 ms, its
    # memory term (1e3 + 1.1e6) / 1.1e10 = 0.1 ms), so it does not pull on the memory figures.
    assert dev.efficiency["memory"].fraction == pytest.approx(1 / 0.9, rel=1e-4)
    assert dev.efficiency["memory"].half_work == pytest.approx(1e7 / 9, rel=1e-3)
    assert set(dev.efficiency) == {"gemm", "memory"}  # classes without samples are left out


def test_fit_of_constant_rate_has_no_half_work():
    # Three GEMMs at one rate, 80% of the best... all at the best: fraction 1, no per-launch term.
    samples = [Sample("launch", _k("memory", nbytes=12), 1e-6, launch=True),
               Sample("add", _k("memory", nbytes=1e6), 1e-4, ),
               Sample("gelu", _k("memory", other=1e6), 1e-3)]
    samples += [Sample(f"gemm {w:g}", _k("gemm", flops=w), w / 5e10) for w in (1e7, 1e8, 1e9)]
    dev = fit_device("flat", samples)
    assert dev.matmul_flops["fp32"] == pytest.approx(5e10)
    assert dev.efficiency["gemm"].fraction == pytest.approx(1.0, rel=1e-6)
    assert dev.efficiency["gemm"].half_work == 0.0


def _profile(tmp_path):
    from vitcost.analytic.hardware import profile_toml
    from vitcost.measure.calibrate import Machine, calibrated_profile

    m = Machine("cpu", "Test CPU", "host", "2.x", 1, 8 * 2**30)
    others = [Sample(c, _k(c, flops=1e8), 2e-3) for c in ("conv", "flash", "efficient")]
    others += [Sample("dw", _k("depthwise", nbytes=1e6), 1e-3), Sample("gemm tiny", _k("gemm", flops=1e5), 5e-6)]
    hw = calibrated_profile(m, synthetic() + others, "mine", 1.5)
    path = tmp_path / "mine.toml"
    path.write_text(profile_toml(hw))
    return hw, path


def test_profile_round_trip_through_hardware_file(tmp_path, capsys):
    from vitcost.analytic.hardware import get_hardware

    hw, path = _profile(tmp_path)
    back = get_hardware(str(path))
    assert back.threads == 1 and back.cpu and back.calibration["runs"][0]["name"] == "add big"
    assert back.bandwidth == pytest.approx(1e10) and back.matmul_flops["fp32"] == pytest.approx(1e9 / 10.5e-3)
    assert back.launch_overhead == pytest.approx(1e-6)
    for cls, e in hw.efficiency.items():  # written to 4 digits
        assert back.efficiency[cls].fraction == pytest.approx(e.fraction, rel=1e-3)
        assert back.efficiency[cls].half_work == pytest.approx(e.half_work, rel=1e-3, abs=1e-9)
    assert "measured by calibrate on host" in back.sources["efficiency"]
    assert "1 thread" in back.sources["fp32"]
    # a dtype the machine did not run is the slowest measured one's peak, said so
    assert back.sources["bf16"].startswith("assumed:")
    code, out, err = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "--hardware", str(path), "--dtype", "fp32",
                         "-f", "json")
    assert code == 0, err
    import json

    from vitcost import estimate
    from vitcost.analytic.time_model import kernels

    row = json.loads(out)[0]
    assert row["time_model"] == "per-op"
    # the per-op time by hand: each kernel max(compute, memory, floor) with the file's figures
    est = estimate("vit_ti16", 224, dtype="fp32")
    total = 0.0
    for k in kernels(est, amp=False):
        e = back.efficiency[k.cls]
        if k.cls in ("gemm", "conv", "flash", "efficient"):
            t = max((k.flops + e.half_work) / (back.matmul_flops["fp32"] * e.fraction),
                    k.bytes / (back.bandwidth * back.efficiency["memory"].fraction))
        else:
            t = max((k.bytes + e.half_work) / (back.bandwidth * e.fraction), k.other_flops / back.vector_flops)
        total += max(t, back.launch_overhead)
    assert row["time_s"] == pytest.approx(total, rel=1e-9)


def test_bad_profile_fields(tmp_path):
    from vitcost.analytic.hardware import get_hardware
    from vitcost.errors import VitcostError

    _, path = _profile(tmp_path)
    text = path.read_text()
    for bad, said in ((text.replace("threads = 1", "threads = 0"), "threads"),
                      (text.replace('device = "cpu"', 'device = "tpu"'), "device")):
        p = tmp_path / "bad.toml"
        p.write_text(bad)
        with pytest.raises(VitcostError, match=said):
            get_hardware(str(p))


def test_bad_input_is_one_line(capsys):
    import os

    cores = len(os.sched_getaffinity(0))
    code, out, err = run(capsys, "calibrate", "--threads", str(cores + 1))
    assert code == 2 and out == "" and err.count("\n") == 1 and f"1..{cores}" in err
    code, _, err = run(capsys, "calibrate", "--name", "../x")
    assert code == 2 and err.count("\n") == 1 and "--name" in err
    code, _, err = run(capsys, "calibrate", "-o", "/no/such/folder/x.toml")
    assert code == 2 and err.count("\n") == 1


def test_cuda_without_cuda_is_one_line(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error is for machines without it")
    code, out, err = run(capsys, "calibrate", "--device", "cuda")
    assert code == 2 and out == "" and err.strip() == "vitcost: error: --device cuda was asked for but torch sees " \
        "no CUDA device."


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="the CUDA ladder (CUDA events, synchronised) needs a CUDA device")
def test_cuda_quick_run(capsys, tmp_path):
    code, out, err = run(capsys, "calibrate", "--device", "cuda", "--quick", "-o", str(tmp_path / "gpu.toml"))
    assert code == 0, err
    from vitcost.analytic.hardware import get_hardware

    hw = get_hardware(str(tmp_path / "gpu.toml"))
    assert hw.calibration["device"] == "cuda" and hw.threads is None and not hw.cpu
    assert {"fp16", "fp32"} <= {r["dtype"] for r in hw.calibration["runs"]}
    assert hw.matmul_flops["fp16"] > hw.matmul_flops["fp32"]  # tensor cores


def test_busy_machine_warns(capsys, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import vitcost.measure.calibrate as cal

    def noisy(benches, device, **kw):  # every rung's repeats spread by 50%
        return [Sample(s.name, s.kernel, s.seconds, 0.5, s.launch) for s in synthetic()]

    monkeypatch.setattr(cal, "run_ladder", noisy)
    code, out, err = run(capsys, "calibrate", "--quick", "-o", str(tmp_path / "busy.toml"))
    assert code == 0 and "warning" in err and "50%" in err and (tmp_path / "busy.toml").exists()


def test_real_quick_run_is_read_at_once(capsys, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    code, out, err = run(capsys, "calibrate", "--quick", "--threads", "1", "--name", "here")
    assert code == 0, err
    path = tmp_path / "vitcost" / "devices" / "here.toml"
    assert path.exists() and "--hardware here" in out
    from vitcost.analytic.hardware import get_hardware

    hw = get_hardware("here")
    assert hw.threads == 1 and hw.calibration["device"] == "cpu"
    # the measured figures are this machine's: a 1-thread fp32 GEMM between 0.1 and 1000 GFLOP/s
    assert 1e8 < hw.matmul_flops["fp32"] < 1e12
    runs = hw.calibration["runs"]
    assert {r["class"] for r in runs} == {"gemm", "conv", "depthwise", "flash", "efficient", "memory", "gather"}
    assert all(r["median_s"] > 0 and r["spread"] >= 0 for r in runs)
    assert set(hw.efficiency) == {"gemm", "conv", "depthwise", "flash", "efficient", "memory", "gather"}
    # the fit follows its own runs: the median predicted / measured of the ladder within 2x
    ratios = sorted(r["ratio"] for r in runs)
    assert 0.5 < ratios[len(ratios) // 2] < 2
    assert math.isfinite(hw.launch_overhead) and hw.launch_overhead > 0
    code, out, err = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "--hardware", "here", "--dtype", "fp32")
    assert code == 0 and "calibrated" in out


def test_cpu_step_loops_over_tensors(tmp_path):
    # torch runs its optimizers' multi-tensor kernels only on CUDA-like devices: on a CPU profile the
    # step's update is one launch per parameter tensor per kernel (train_time's foreach=False)
    from vitcost import estimate
    from vitcost.analytic.hardware import get_hardware
    from vitcost.analytic.time_model import time_device
    from vitcost.analytic.train_time import step_time, train_step_time
    from vitcost.vocab import Optimizer

    _, path = _profile(tmp_path)
    hw = get_hardware(str(path))
    est = estimate("vit_ti16", 64, dtype="fp32")
    t, how = step_time(est, hw, None, Optimizer.adamw, amp=False)
    dev = time_device(hw)
    assert how == "per-op"
    assert t == pytest.approx(train_step_time(est, dev, False, Optimizer.adamw, foreach=False))
    assert t > train_step_time(est, dev, False, Optimizer.adamw, foreach=True)


def test_profile_shows_calibrated_time(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("COLUMNS", "250")  # the table's columns and caption unwrapped
    import json

    _, path = _profile(tmp_path)
    code, out, err = run(capsys, "profile", "-m", "vit_ti16", "-r", "64", "--device", "cpu", "--hardware", str(path),
                         "--repeats", "2", "--warmup", "1", "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["time_model"] == "per-op" and row["threads"] == 1  # the profile's thread count
    assert row["time_ratio"] == pytest.approx(row["measured_time_s"] / row["predicted_time_s"])
    code, out, err = run(capsys, "profile", "-m", "vit_ti16", "-r", "64", "--device", "cpu", "--hardware", str(path),
                         "--repeats", "2", "--warmup", "1")
    text = " ".join(out.split())
    assert code == 0 and "time pred" in text and "time meas" in text and "per-op time model" in text
