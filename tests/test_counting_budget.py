"""`check`'s counting budget: what a real count holds, modelled from meta forwards and measured here in
a subprocess under an address-space limit; the "might not fit" rule against faked limits."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from vitcost.cli import main  # noqa: E402
from vitcost.errors import VitcostError  # noqa: E402
from vitcost.measure import counting_meta as cm  # noqa: E402
from vitcost.measure.check import check_model, choose_method  # noqa: E402
from vitcost.nets import build  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_counting_memory.py"
GIB = 2**30


def _measured(model: str, res: int, attn: str) -> list[dict]:
    """Each counter's resident peak beyond the built model (VmHWM after a reset), in a child capped at 4 GiB."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * GIB, 4 * GIB))

    proc = subprocess.run([sys.executable, str(BENCH), "--child", model, str(res), attn], capture_output=True,
                          text=True, preexec_fn=cap, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("model,res,attn", [("vit_ti16", 448, "math"), ("igpt_s", 32, "sdpa")])
def test_the_hold_model_is_within_25_percent_of_a_measurement(model, res, attn):
    """fvcore's trace with autograd on (every saved tensor alive), FlopCounterMode under no_grad: the
    measured resident peaks of both (hundreds of MiB here) against `count_hold_bytes`. A resident peak is
    a lower bound of what was allocated (pages the kernel has not yet mapped, or has reclaimed on a busy
    machine, do not count), so a run that falls short is measured again and the larger peak taken."""
    rows = _measured(model, res, attn)
    if any(row["held"] / row["predicted"] < 0.75 for row in rows):
        again = _measured(model, res, attn)
        rows = [max(a, b, key=lambda r: r["held"]) for a, b in zip(rows, again)]
    for row in rows:
        assert 0.75 <= row["held"] / row["predicted"] <= 1.25, row


def test_fvcore_holds_what_autograd_saves_and_fused_attention_saves_no_scores():
    """By hand, for one ViT-Ti/16 block at 448 px (785 tokens, 3 heads): on the math path the autograd
    forward keeps each block's softmax scores, on the sdpa path (torch's fused CPU kernel) none."""
    n, heads = (448 // 16) ** 2 + 1, 3
    scores = heads * n * n * 4
    peaks = {}
    for attn in ("math", "sdpa"):
        net = build("vit_ti16:depth=1", 448, attn=attn, device="meta").eval()
        peaks[attn] = cm.forward_profile(net, cm.make_inputs((1, 3, 448, 448), meta=True, dtype=torch.float32))
    (live_math, grad_math), (live_sdpa, grad_sdpa) = peaks["math"], peaks["sdpa"]
    assert live_math >= 2 * scores > live_sdpa  # QK^T and its softmax alive together; fused: neither
    assert grad_math >= 2 * scores  # the softmax's output saved for the backward beside the live QK^T
    assert grad_math - grad_sdpa > scores / 2  # the fused kernel saves no score matrix


def test_limits_are_the_least_of_memory_rlimit_and_cgroup(monkeypatch, tmp_path):
    import psutil

    class VM:
        available = 20 * GIB

    monkeypatch.setattr(psutil, "virtual_memory", lambda: VM)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (12 * GIB, resource.RLIM_INFINITY))
    monkeypatch.setattr(cm, "_vm_size", lambda: 4 * GIB)
    (tmp_path / "memory.max").write_text(f"{10 * GIB}\n")
    (tmp_path / "memory.current").write_text(f"{3 * GIB}\n")
    monkeypatch.setattr(cm, "CGROUP", tmp_path)
    limits = cm.memory_limits()
    assert limits == {"available memory": 20 * GIB, "the address-space limit (RLIMIT_AS)": 8 * GIB,
                      "the cgroup's memory.max": 7 * GIB}
    assert cm.memory_budget() == 7 * GIB
    assert "cgroup" in cm.too_large(5 * GIB)
    (tmp_path / "memory.max").write_text("max\n")  # no cgroup limit
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert cm.memory_limits() == {"available memory": 20 * GIB}


def test_might_not_fit_is_one_and_a_half_times_the_prediction():
    net = build("vit_ti16", 224, attn="math", device="meta").eval()
    shape = (1, 3, 224, 224)
    predicted = cm.predict_count_bytes(net, cm.make_inputs(shape, meta=True, dtype=torch.float32))
    assert choose_method("auto", net, shape, budget_bytes=int(1.5 * predicted) + 1) == "real"
    assert choose_method("auto", net, shape, budget_bytes=int(1.49 * predicted)) == "meta"
    with pytest.raises(VitcostError, match="meta device"):
        choose_method("real", net, shape, budget_bytes=int(1.49 * predicted))
    with pytest.raises(VitcostError, match="meta device"):
        check_model("vit_ti16", 224, method="real", budget_bytes=int(1.49 * predicted))


@pytest.mark.parametrize("argv", [["-m", "vit_l16", "-r", "1024", "--attn", "math"],
                                  ["-m", "igpt_s", "-r", "2048", "--attn", "math"]])
def test_check_real_refuses_up_front_under_a_small_limit(argv, capsys, monkeypatch):
    """What was OOM-killed at 24 GB: with a 5 GiB cgroup limit faked, `--method real` is one line, exit 2,
    before anything is allocated; `auto` counts on the meta device."""
    monkeypatch.setattr(cm, "memory_limits", lambda: {"the cgroup's memory.max": 5 * GIB})
    with pytest.raises(SystemExit) as e:
        main(["check", *argv, "--method", "real"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "the cgroup's memory.max" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main(["check", *argv, "-f", "json"])
    out = capsys.readouterr().out
    assert e.value.code in (0, None) or json.loads(out)
    assert all(row["method"] == "meta" for row in json.loads(out))
