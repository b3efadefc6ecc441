"""The training step's kernels (`vitcost.analytic.train_time`): the backward's matmul work is the training
cost model's (which FlopCounterMode checks layer by layer, `check --mode train`), the update's launches
and bytes follow the optimizers' per-tensor kernels counted by hand, and the time shown for a step is
`step_time`'s everywhere. Accuracy against measured steps is the benchmark's
(benchmarks/bench_train_time_vs_timm_gpu.py, reports/train_time_vs_timm_gpu.txt)."""

from __future__ import annotations

import json

import pytest

from vitcost import estimate
from vitcost.analytic.cost import FLOPS_PER_MAC
from vitcost.analytic.hardware import get_hardware
from vitcost.analytic.time_model import kernels
from vitcost.analytic.train_time import step_kernels, step_time
from vitcost.analytic.training import train_cost
from vitcost.cli import main
from vitcost.vocab import Kernel, Optimizer

# timm's vit_tiny_patch16_224 parameter tensors: patch embedding weight and bias, class token, position
# embedding; per block norm1, qkv, proj, norm2, fc1, fc2 with weight and bias (12 x 12); norm and head (2 x 2)
VIT_TI_TENSORS = 2 + 1 + 1 + 12 * 12 + 2 + 2
VIT_TI_PARAMS = 5_717_416  # timm's vit_tiny_patch16_224


@pytest.mark.parametrize("model,attn", [("vit_ti16", "math"), ("vit_ti16", "flash"), ("swin_t", "math"),
                                        ("resnet50", "math"), ("convnext_tiny", "math"), ("mixer_s16", "math"),
                                        ("mvitv2_t", "math"), ("vit_b16_linear", "math")])
def test_backward_matmul_work_is_the_training_cost_models(model: str, attn: str) -> None:
    est = estimate(model, 64 if model == "vit_ti16" else 224, 2, "fp16", attn)
    n_fwd = len(kernels(est, True))
    ks = step_kernels(est, True, Optimizer.none)
    back = ks[n_fwd:]
    flops = sum(k.flops for k in back)
    assert flops == pytest.approx(FLOPS_PER_MAC * train_cost(est).backward.macs, rel=1e-12)


def test_the_update_is_the_optimizers_kernels_per_tensor() -> None:
    est = estimate("vit_ti16", 224, 8, "fp16")
    assert est.params == VIT_TI_PARAMS
    n_step = len(step_kernels(est, True, Optimizer.none))

    def update(opt: Optimizer, **kw: bool) -> list:
        return step_kernels(est, True, opt, **kw)[n_step:]

    # SGD with Nesterov momentum: buf.mul_, buf.add_, g.add, p.add_: 4 kernels a tensor; bytes per fp32
    # parameter: (4 + 4) + (8 + 4) + (8 + 4) + (8 + 4) = 44
    loop = update(Optimizer.sgd, foreach=False)
    assert len(loop) == 4 * VIT_TI_TENSORS
    assert sum(k.bytes for k in loop) == pytest.approx(44 * VIT_TI_PARAMS)
    assert len(update(Optimizer.sgd)) == 4  # one launch per kernel over all tensors
    # gradients zeroed in place: a memset a tensor, then each gradient accumulated (read 2, write 1)
    zeroed = update(Optimizer.none, set_to_none=False, foreach=False)
    assert len(zeroed) == 2 * VIT_TI_TENSORS
    assert sum(k.bytes for k in zeroed) == pytest.approx(4 * VIT_TI_PARAMS + 12 * VIT_TI_PARAMS)
    assert sum(k.bytes for k in update(Optimizer.adamw)) == pytest.approx(104 * VIT_TI_PARAMS)


def test_a_step_costs_more_than_its_forward_and_checkpointing_adds_the_recompute() -> None:
    from vitcost.analytic.time_model import forward_time, time_device
    from vitcost.analytic.train_memory import train_memory

    hw = get_hardware("rtx4090")
    est = estimate("vit_s16", 224, 256, "bf16")
    plain, how = step_time(est, hw)
    fwd = forward_time(est, time_device(hw))
    assert how == "per-op" and 2.5 * fwd < plain < 4 * fwd
    ck = train_memory(est, Optimizer.adamw, 1)
    assert step_time(est, hw, ck.recompute)[0] == pytest.approx(plain + fwd * ck.recompute.macs / est.macs)
    # an fp32 step on the same profile: the per-op model at the fp32 peaks, slower than the bf16 one
    fp32 = estimate("vit_s16", 224, 256)
    assert step_time(fp32, hw)[1] == "per-op" and step_time(fp32, hw)[0] > plain
    assert step_time(est, get_hardware("cpu"))[1] == "roofline"  # no fitted efficiencies


def test_savings_baseline_is_compares_step_time(capsys: pytest.CaptureFixture[str]) -> None:
    """One step time everywhere: savings' fp32 baseline row and compare --mode train print the same figure."""
    argv = ["-m", "vit_s16", "-r", "224", "--batch", "256", "--hardware", "rtx4090", "-f", "json"]
    with pytest.raises(SystemExit):
        main(["compare", "--mode", "train", *argv])
    (row,) = json.loads(capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["savings", "vit_s16", *argv[2:]])
    base = next(r for r in json.loads(capsys.readouterr().out) if r["technique"] == "baseline")
    assert base["time_s"] == row["time_s"] and base["time_model"] == row["time_model"]


def test_compare_train_shows_step_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "-m", "vit_s16", "-r", "224", "--mode", "train", "--batch", "256", "--dtype", "bf16",
              "--hardware", "rtx4090", "--optimizer", "sgd", "-f", "json"])
    code = exc.value.code
    (row,) = json.loads(capsys.readouterr().out)
    est = estimate("vit_s16", 224, 256, "bf16")
    t, how = step_time(est, get_hardware("rtx4090"), None, Optimizer.sgd)
    assert code == 0 and row["time_s"] == t and row["time_model"] == how == "per-op"


def test_fused_backward_recomputes_the_scores() -> None:
    est = estimate("vit_ti16", 224, 4, "fp16", Kernel.flash)
    fwd = [k for k in kernels(est, True) if k.kind == "fused"]
    back = [k for k in step_kernels(est, True, Optimizer.none) if k.kind == "fused"][len(fwd):]
    assert len(back) == len(fwd) and sum(k.flops for k in back) == pytest.approx(2.5 * sum(k.flops for k in fwd))
