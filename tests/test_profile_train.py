"""`vitcost profile --mode train`: one training step per row, predicted (`train_memory`'s parts, the step's FLOPs,
a roofline) beside a real step of the reference net measured part by part on the CPU and timed; the JSON
fields, the table's title, and the errors for options that only make sense in train mode."""

from __future__ import annotations

import json

import pytest

from vitcost.cli import main
from vitcost.measure.profile import TRAIN_COLUMNS, TRAIN_PARTS

# Tiny variants (activations comparable to the weights, so that the step peak tests the activation model),
# batch 2 (at batch 1 a class token's gradient is a view of the token gradient, which the model does not follow).
VIT = ("vit_ti16", "dim=64,depth=2,heads=2,patch=8,num_classes=10", "64")
SWIN = ("swin_t", "embed_dim=16,depths=[2,2],heads=[1,2],num_classes=10", "112")
CONVNEXT = ("convnext_t", "dims=[16,32,32,32],depths=[1,2,1,1],num_classes=10", "64")
ENV = {"device", "device_name", "torch_version", "threads", "batch", "dtype", "attn"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _train(capsys, design: tuple[str, str, str], *extra: str) -> dict:
    model, overrides, res = design
    code, out, err = run(capsys, "profile", "-m", model, "--set", overrides, "-r", res, "--batch", "2",
                         "--device", "cpu", "--threads", "1", "--repeats", "2", "--warmup", "1", "--mode", "train",
                         "-f", "json", *extra)
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 1
    return rows[0]


@pytest.fixture
def torch_one_thread():
    torch = pytest.importorskip("torch", reason="measuring needs torch")
    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


@pytest.mark.parametrize("design", [VIT, SWIN, CONVNEXT], ids=["vit", "swin", "convnext"])
@pytest.mark.parametrize("extra", [(), ("--checkpoint", "block"), ("--optimizer", "sgd", "--checkpoint", "2")],
                         ids=["adamw", "adamw-block", "sgd-2blocks"])
def test_measured_step_peak_within_10_percent(capsys, torch_one_thread, design, extra):
    r = _train(capsys, design, *extra)
    assert r["status"] == "ok" and r["mode"] == "train"
    # the resident parts are exact: float32 weights, their gradients, the optimizer's float32 state
    assert r["predicted_weights_bytes"] == r["measured_weights_bytes"]
    assert r["predicted_optimizer_state_bytes"] == r["measured_optimizer_state_bytes"]
    assert r["predicted_gradients_bytes"] == r["measured_gradients_bytes"]
    assert r["predicted_activations_saved_bytes"] == pytest.approx(r["measured_activations_saved_bytes"], rel=0.02)
    assert r["step_peak_ratio"] == pytest.approx(1.0, abs=0.10), r["predicted_peak_at"]
    assert r["step_peak_ratio"] == r["measured_step_peak_bytes"] / r["predicted_step_peak_bytes"]
    # the allocator's step peak (torch.profiler) holds every live tensor the tracker saw
    assert r["measured_alloc_step_peak_bytes"] >= 0.98 * r["measured_step_peak_bytes"]


def test_autocast_step_within_15_percent(capsys, torch_one_thread):
    r = _train(capsys, SWIN, "--dtype", "bf16")
    assert r["status"] == "ok" and r["dtype"] == "bf16"
    assert r["predicted_weights_bytes"] == r["measured_weights_bytes"]  # float32 master weights under autocast
    assert r["measured_weight_casts_bytes"] > 0
    assert r["predicted_weight_casts_bytes"] == pytest.approx(r["measured_weight_casts_bytes"], rel=0.02)
    assert r["step_peak_ratio"] == pytest.approx(1.0, abs=0.15)


def test_checkpointing_saves_what_it_predicts(capsys, torch_one_thread):
    """Checkpointing per block shrinks the saved activations in the measurement and in the prediction alike,
    and its recomputed forward is added to the step's FLOPs."""
    full = _train(capsys, VIT)
    ck = _train(capsys, VIT, "--checkpoint", "block")
    saved_m = 1 - ck["measured_activations_saved_bytes"] / full["measured_activations_saved_bytes"]
    saved_p = 1 - ck["predicted_activations_saved_bytes"] / full["predicted_activations_saved_bytes"]
    assert saved_m > 0.3 and saved_p == pytest.approx(saved_m, abs=0.02)
    assert full["recompute_flops"] == 0 < ck["recompute_flops"]
    assert ck["step_flops"] == full["step_flops"] + ck["recompute_flops"]


def test_json_fields(capsys, torch_one_thread):
    r = _train(capsys, VIT, "--optimizer", "none")
    assert list(r) == list(TRAIN_COLUMNS)
    assert ENV <= set(r) and r["device"] == "cpu" and r["threads"] == 1 and r["batch"] == 2
    assert r["torch_version"] == torch_one_thread.__version__ and r["device_name"]
    assert (r["optimizer"], r["checkpoint"]) == ("none", "none")
    for part in TRAIN_PARTS:
        assert r[f"predicted_{part}_bytes"] >= 0 and r[f"measured_{part}_bytes"] >= 0
    assert r["predicted_optimizer_state_bytes"] == r["measured_optimizer_state_bytes"] == 0
    assert r["measured_time_s"] > 0 and r["predicted_time_s"] > 0
    assert r["time_ratio"] == pytest.approx(r["measured_time_s"] / r["predicted_time_s"])
    assert r["spec"]["depth"] == 2


def test_predict_only_train_rows_and_table(capsys):
    code, out, err = run(capsys, "profile", "-m", "vit_b16", "swin_t", "-r", "224", "--mode", "train",
                         "--predict-only", "--hardware", "h100-sxm", "--dtype", "bf16", "--checkpoint", "block",
                         "-f", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["predicted", "predicted"]
    assert all(r["measured_step_peak_bytes"] is None and r["checkpoint"] == "block" for r in rows)
    # ViT-B/16: 86.6 M float32 weights, their float32 gradients, AdamW's two float32 moments
    vit = rows[0]
    assert vit["predicted_weights_bytes"] == vit["predicted_gradients_bytes"] == 4 * vit["params"]
    assert vit["predicted_optimizer_state_bytes"] >= 8 * vit["params"]
    code, out, err = run(capsys, "profile", "-m", "vit_b16", "-r", "224", "--mode", "train", "--predict-only",
                         "--optimizer", "sgd", "--checkpoint", "2", "-f", "markdown")
    assert code == 0, err
    assert "mode train, optimizer sgd, checkpoint 2" in out.splitlines()[0]
    assert "| step pred | step meas |" in out


@pytest.mark.parametrize("argv,phrase", [
    (["--optimizer", "sgd"], "--mode train"),
    (["--checkpoint", "block"], "--mode train"),
    (["--mode", "train", "--checkpoint", "often"], "checkpoint"),
    (["--mode", "train", "--checkpoint", "0"], "checkpoint"),
    (["--mode", "train", "--optimizer", "lion"], "--optimizer"),
    (["--mode", "training"], "--mode"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, phrase):
    code, out, err = run(capsys, "profile", "-m", "vit_ti16", "--predict-only", *argv)
    assert code == 2 and out == ""
    assert err.startswith("vitcost: error:") and err.count("\n") == 1 and phrase in err
