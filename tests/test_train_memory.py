"""Training-step memory: the analytic model (`vitcost.analytic.train_memory`) against real training steps of
the reference nets on the CPU (`vitcost.measure.train_memory`: live tensors per phase, saved tensors through
saved_tensors_hooks), against hand derivations, and against Korthikanti et al. 2022's published
per-layer formula."""

from __future__ import annotations

import pytest

from vitcost import estimate
from vitcost.analytic.memory_wall import train_memory_wall
from vitcost.analytic.train_memory import (
    STATE_COPIES,
    checkpoint_runs,
    step_ops,
    train_memory,
)
from vitcost.design import parse_design
from vitcost.errors import VitcostError
from vitcost.specs import (
    BiFormerSpec,
    ConvNeXtSpec,
    MixerSpec,
    MViTSpec,
    NATSpec,
    PixelSpec,
    ResNetSpec,
    SwinSpec,
    SwinV2Spec,
    ViTSpec,
)
from vitcost.vocab import Dtype, Kernel, parse_checkpoint, parse_optimizer

F32, HALF = 4, 2

# One small design per family and per attention variant, with activations at least comparable to the
# weights so that the activation model is what the step peak tests. Batch 2 throughout: at batch 1 a
# class token's gradient is a view of the whole token gradient, which the model does not follow.
TINY = {
    "vit": (ViTSpec(dim=64, depth=2, heads=2, patch=8, num_classes=10), 64),
    "vit_one_head": (ViTSpec(dim=32, depth=2, heads=1, patch=8, class_tokens=0, num_classes=10), 64),
    "deit": (ViTSpec(dim=32, depth=2, heads=2, patch=8, class_tokens=2, distilled=True, num_classes=10), 64),
    "sam": (ViTSpec(dim=32, depth=3, heads=2, patch=8, class_tokens=0, window=3, global_blocks=(1,), rel_pos=True,
                    neck=16, num_classes=0), 64),
    "linear": (ViTSpec(dim=64, depth=2, heads=2, patch=8, attention="linear", num_classes=10), 64),
    "pixel": (PixelSpec(dim=32, depth=2, heads=2, vocab=64), 12),
    "swin": (SwinSpec(embed_dim=16, depths=(2, 2), heads=(1, 2), window=7, num_classes=10), 112),
    "swinv2": (SwinV2Spec(embed_dim=16, depths=(2, 2), heads=(1, 2), window=8, cpb_hidden=64, num_classes=10), 80),
    "mvit": (MViTSpec(dims=(16, 32), depths=(1, 1), heads=(1, 2), num_classes=10), 64),
    # hybrid window attention: windows padded in both stages, the last block global with a doubled K/V stride
    "mvit_hybrid": (MViTSpec(dims=(16, 32), depths=(2, 2), heads=(1, 2), window=4, global_blocks=(3,),
                             double_kv_blocks=(3,), num_classes=10), 72),
    "nat": (NATSpec(embed_dim=16, depths=(2, 1), heads=(1, 2), kernel=5, mlp_ratio=3.0, num_classes=10), 64),
    "mixer": (MixerSpec(dim=64, depth=2, tokens_hidden=32, channels_hidden=128, num_classes=10), 64),
    "convnext": (ConvNeXtSpec(dims=(16, 32, 32, 32), depths=(1, 2, 1, 1), num_classes=10), 64),
    "resnet": (ResNetSpec(depths=(1, 2, 1, 1), width=8, num_classes=10), 64),
    # routing in two stages (on 13x13 and 7x7 grids, padded to 14x14 and 8x8), global attention in the last
    "biformer": (BiFormerSpec(dims=(16, 32, 64), depths=(2, 1, 1), topks=(1, 2, 0), n_win=2, head_dim=8,
                              global_heads=2, num_classes=10), 52),
    # non-local blocks after layer1.0 (with the projection shortcut), layer2.0 and layer2.1, subsampled keys
    "resnet_nl": (ResNetSpec(depths=(1, 2, 1, 1), width=8, num_classes=10, nl_every=(1, 1), nl_subsample=True), 64),
}
FAMILIES = sorted({spec.family for spec, _ in TINY.values()})


# ---------------------------------------------------------------------------------------------
# Hand derivations (no torch)


def test_korthikanti_per_layer_activation_memory():
    """Korthikanti et al. 2022 (Reducing Activation Recomputation in Large Transformer Models, Sec. 4.1,
    Eq. 1): a transformer layer with 16-bit activations and dropout stores sbh(34 + 5as/h) bytes, s tokens,
    b batch, h width, a heads. Configured as the paper assumes: the model in 16 bits (precision="half"),
    dropout after the attention probabilities and on both residual branches, math attention (no flash),
    a batch and a head count above 1 (torch then copies the head-split q, k, v, as Megatron's layout does).

    The 34 sbh, term by term (2 bytes per element, 1 per dropout-mask element), as torch saves them:
      norm1        its input x                                     2 sbh
      qkv          norm1's output                                  2 sbh
      q k^T        q * scale and k                                 4 sbh
      scores @ v   v                                               2 sbh
      proj         the merged heads                                2 sbh
      dropout      the mask of the attention branch                  sbh    -> attention block 11 sbh
      norm2        its input                                       2 sbh
      fc1          norm2's output                                  2 sbh
      GELU         its input, fc1's output (width 4h)              8 sbh
      fc2          GELU's output                                   8 sbh
      dropout      the mask of the MLP branch                        sbh    -> MLP 19 sbh, norms 4 sbh
    and the 5 as^2 b: the softmax output 2 as^2 b, the attention dropout's mask as^2 b and its output
    2 as^2 b (which scores @ v saves instead of the softmax output). The paper leaves out LayerNorm's
    mean and rstd: 2 values per row and norm, 8 sb bytes here, asserted apart."""
    h, a, patch, res, b = 64, 4, 8, 64, 2
    s = (res // patch) ** 2 + 1  # tokens, class token included
    est = estimate(ViTSpec(dim=h, depth=2, heads=a, patch=patch, num_classes=10), res, b, "fp16", "math")
    layer: dict[tuple, int] = {}
    for op in step_ops(est, Kernel.math, dropout=True, half=True):
        if op.block == "blocks.1":
            layer.update({sv.key: sv.nbytes for sv in op.saved})
    stats = sum(nb for key, nb in layer.items() if key[0] == "stats")
    assert sum(layer.values()) - stats == s * b * h * 34 + 5 * a * s * s * b
    assert stats == 2 * 2 * s * b * HALF


def test_vit_block_saved_bytes_by_hand_fp32():
    """One pre-norm ViT block in float32 at batch 2, h = 2 heads of width d, N tokens, width D = h d, MLP 4D:
    norm1 x + (mean, rstd); qkv norm1(x); attention q*scale, k and v (copies: head-split views with B, h > 1)
    and the softmax output [B, h, N, N]; proj the merged heads; norm2 and fc1 as norm1 and qkv; GELU fc1's
    output; fc2 GELU's output. Elements: 2x(BND + 2BN) + BND + 3BND + BhN^2 + BND + BND + 4BND + 4BND."""
    spec, res = TINY["vit"]
    b, d_model, heads = 2, spec.dim, spec.heads
    n = (res // spec.patch) ** 2 + 1
    x = b * n * d_model
    expected = (2 * (x + 2 * b * n) + x + 3 * x + b * heads * n * n + x + x + 4 * x + 4 * x) * F32
    saved: dict[tuple, int] = {}
    for op in step_ops(estimate(spec, res, b)):
        if op.block == "blocks.0":
            saved.update({sv.key: sv.nbytes for sv in op.saved})
    assert sum(saved.values()) == expected


@pytest.mark.parametrize("optimizer", list(STATE_COPIES))
def test_weights_gradients_optimizer_state_by_hand(optimizer):
    """Mixer: per block two LayerNorms (2 tensors each) and four linears with bias (2 each), plus the stem
    conv, the final norm and the head: 2 + 4*2*2... AdamW keeps exp_avg and exp_avg_sq (2 x 4 bytes per
    weight) and a float32 step per tensor, SGD a momentum buffer (4 bytes per weight); mixed precision
    keeps all of them in float32."""
    spec, res = TINY["mixer"]
    est = estimate(spec, res, 2, "bf16")
    m = train_memory(est, optimizer)
    tensors = spec.depth * (2 * 2 + 4 * 2) + 2 + 2 + 2  # blocks; stem conv w+b; final norm; head w+b
    assert m.weights == m.gradients == est.params * F32
    assert m.optimizer_state == {"none": 0, "sgd": est.params * F32,
                                 "adamw": 2 * est.params * F32 + tensors * F32}[optimizer]


def test_checkpointing_keeps_block_inputs_and_recomputes_their_forward():
    """checkpoint="block": the forward keeps one residual-stream tensor per block (B*N*D floats) and the ops
    outside the blocks; the backward runs each block's forward again up to fc2 (its last saving op), so the
    recomputed MACs are every block's MACs (the skipped residual adds have none)."""
    spec, res = TINY["vit"]
    est = estimate(spec, res, 2)
    full, ck = train_memory(est), train_memory(est, checkpoint=1)
    n = (res // spec.patch) ** 2 + 1
    outside = sum(nb for path, nb in full.saved_by_layer.items() if not path.startswith("blocks."))
    assert ck.activations_saved == outside + spec.depth * 2 * n * spec.dim * F32
    assert ck.recompute_macs == sum(op.cost.macs for op in est.ops if op.path.startswith("blocks."))
    assert full.recompute_macs == 0
    two = train_memory(est, checkpoint=2)  # both blocks in one run: one input kept
    assert two.activations_saved == outside + 2 * n * spec.dim * F32


def test_checkpoint_runs_stay_inside_stages():
    spec, res = TINY["convnext"]  # stages of 1, 2, 1, 1 blocks
    steps = step_ops(estimate(spec, res, 2))
    blocks_of = [sorted({s.block for s in steps[a:b + 1] if s.block}) for a, b in checkpoint_runs(steps, 2)]
    assert blocks_of == [["stages.0.blocks.0"], ["stages.1.blocks.0", "stages.1.blocks.1"],
                         ["stages.2.blocks.0"], ["stages.3.blocks.0"]]


def test_bad_options():
    est = estimate(*TINY["vit"])
    with pytest.raises(VitcostError, match="unknown optimizer"):
        parse_optimizer("lion")
    for bad in ("0", "two", -1, 1.5):
        with pytest.raises(VitcostError, match="checkpoint"):
            parse_checkpoint(bad)
    assert parse_checkpoint("block") == parse_checkpoint(1) == 1 and parse_checkpoint(None) == 0
    with pytest.raises(VitcostError, match="unknown device"):
        train_memory(est, device="tpu")


@pytest.mark.parametrize("solve", ["res", "batch"])
def test_training_memory_wall_against_a_scan(solve):
    """The wall solved from the step candidates' polynomials equals the largest size found by evaluating
    the exact model at every size (the step fits there and not one step up)."""
    budget = 64 * 2**20
    spec, res = TINY["vit"]
    w = train_memory_wall(parse_design(spec), budget, solve=solve, res=(res, res), batch=2, dtype=Dtype.bf16,
                          checkpoint=1)

    def peak(v: int) -> int:
        est = estimate(spec, v, 2, "bf16") if solve == "res" else estimate(spec, res, v, "bf16")
        return train_memory(est, checkpoint=1).step_peak

    sizes = range(spec.patch, 1024, spec.patch) if solve == "res" else range(1, 4096)
    fitting = [v for v in sizes if peak(v) <= budget] if solve == "res" else None
    if solve == "batch":  # affine in the batch: bisect the exact model instead of 4096 evaluations
        lo, hi = 1, 4096
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if peak(mid) <= budget else (lo, mid - 1)
        fitting = [lo]
    assert w.value == max(fitting)
    assert w.step_peak <= budget < w.next_step_peak


# ---------------------------------------------------------------------------------------------
# vitcost compare --mode train


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from vitcost.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_compare_train_json_rows_carry_the_parts(capsys):
    import json

    from vitcost.analytic.training import train_cost

    code, out, _ = _cli(capsys, "compare", "--mode", "train", "-m", "vit_b16", "swin_t", "-r", "224", "448",
                        "-b", "4", "--dtype", "bf16", "--attn", "sdpa", "--optimizer", "sgd", "--checkpoint", "2",
                        "-f", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["model"], r["res"]) for r in rows] == [("vit_b16", 224), ("vit_b16", 448), ("swin_t", 224),
                                                       ("swin_t", 448)]
    for r in rows:
        est = estimate(r["model"], r["res"], 4, "bf16", "sdpa")
        m = train_memory(est, "sgd", 2)
        assert r["memory"] == m.parts() and r["train_peak_bytes"] == m.step_peak
        assert r["optimizer"] == "sgd" and r["checkpoint"] == 2 and r["precision"] == "autocast"
        # forward + backward (analytic.training) + the blocks' forward run again
        assert r["train_cost"] == train_cost(est).count("macs") + m.recompute_macs > 3 * est.macs
        assert r["memory"]["optimizer_state"] == est.params * F32  # SGD: one momentum buffer per weight


def test_compare_train_table(capsys):
    code, out, _ = _cli(capsys, "compare", "--mode", "train", "-m", "resnet50", "-r", "224", "-c", "torch")
    assert code == 0
    for column in ("train GFLOPs (torch)", "grads", "opt state", "act saved", "step peak", "adamw"):
        assert column in out


@pytest.mark.parametrize("argv,message", [
    (["--mode", "train", "--optimizer", "lion"], "'lion' is not one of"),
    (["--mode", "train", "--checkpoint", "every"], "checkpoint 'every'"),
    (["--mode", "train", "-c", "fvcore"], "no backward"),
    (["--optimizer", "sgd"], "add --mode train"),
    (["--checkpoint", "block"], "add --mode train"),
])
def test_compare_train_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = _cli(capsys, "compare", "-m", "vit_b16", "-r", "224", *argv)
    assert code == 2 and not out
    assert message in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# Against real training steps (torch)

torch = pytest.importorskip("torch")

from vitcost.analytic.trace import blocks as block_marks  # noqa: E402
from vitcost.measure.train_memory import measure_train_step  # noqa: E402
from vitcost.nets import build  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(name: str, *, dtype: str = "fp32", attn: str = "math", checkpoint=None, optimizer: str = "adamw"):
    spec, res = TINY[name]
    est = estimate(spec, res, 2, dtype, attn)
    blocks = [(m.prefix, m.stage) for m in block_marks(est.ops)] if checkpoint else None
    measured = measure_train_step(build(spec, res, attn=attn), torch.randn(2, 3, res, res), optimizer=optimizer,
                                  amp=None if dtype == "fp32" else torch.bfloat16, checkpoint=blocks,
                                  every=parse_checkpoint(checkpoint) or 1)
    return measured, train_memory(est, optimizer, parse_checkpoint(checkpoint))


def _assert_step(measured, pred, tol: float) -> None:
    assert pred.weights == measured.weights_bytes
    assert pred.optimizer_state == measured.optimizer_state_bytes
    # a gradient can be a view of a larger one (SwinV2's q and v biases: slices of their concat's gradient)
    assert pred.gradients == pytest.approx(measured.gradients_bytes, rel=0.005)
    assert pred.activations_saved == pytest.approx(measured.activations_saved_bytes, rel=0.02)
    assert pred.backward_peak == pytest.approx(measured.backward_peak_bytes, rel=tol), pred.peak_at
    assert pred.step_peak == pytest.approx(measured.step_peak_bytes, rel=tol), pred.peak_at


@pytest.mark.parametrize("name", sorted(TINY))
def test_fp32_step_against_measurement(name):
    measured, pred = _run(name)
    _assert_step(measured, pred, 0.10)
    # what autograd saves, module by module: the same storages torch keeps (the loss apart)
    by_layer = {k: v for k, v in measured.saved_by_layer.items() if k}
    assert {k: v for k, v in pred.saved_by_layer.items() if k != "loss"} == by_layer


@pytest.mark.parametrize("name", sorted(TINY))
def test_checkpointed_step_against_measurement(name):
    measured, pred = _run(name, checkpoint="block")
    _assert_step(measured, pred, 0.10)


@pytest.mark.parametrize("name", sorted(TINY))
def test_autocast_bf16_step_against_measurement(name):
    measured, pred = _run(name, dtype="bf16")
    _assert_step(measured, pred, 0.15)
    assert pred.weight_casts == pytest.approx(measured.weight_cast_bytes, rel=0.02)


@pytest.mark.parametrize("name", ["vit", "swin", "mvit", "mvit_hybrid", "nat", "swinv2", "sam", "biformer",
                                  "resnet_nl"])
def test_sdpa_step_against_measurement(name):
    """sdpa: the fused CPU kernel for ViT; the math composite where a learned term needs a gradient."""
    measured, pred = _run(name, attn="sdpa", dtype="bf16" if name in ("swin", "sam") else "fp32")
    _assert_step(measured, pred, 0.15)


def test_checkpoint_sgd_and_no_optimizer_against_measurement():
    for optimizer in ("sgd", "none"):
        measured, pred = _run("swin", checkpoint=2, optimizer=optimizer)
        _assert_step(measured, pred, 0.10)
        assert pred.optimizer_peak == pytest.approx(measured.optimizer_peak_bytes, rel=0.02)


def test_measured_savings_follow_the_model():
    """Checkpointing and mixed precision shrink the saved activations in the measurement as predicted."""
    base_m, base_p = _run("swin")
    ck_m, ck_p = _run("swin", checkpoint="block")
    amp_m, amp_p = _run("swin", dtype="bf16")
    for m, p in ((ck_m, ck_p), (amp_m, amp_p)):
        saved_m = 1 - m.activations_saved_bytes / base_m.activations_saved_bytes
        saved_p = 1 - p.activations_saved / base_p.activations_saved
        assert saved_p == pytest.approx(saved_m, abs=0.02)
