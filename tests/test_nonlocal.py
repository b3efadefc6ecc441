"""Non-local blocks in a ResNet (Wang et al. 2018, "Non-local Neural Networks"): ResNetSpec's nl_every,
nl_reduction and nl_subsample.

No paper or model zoo publishes params or FLOPs of an ImageNet ResNet-50 with non-local blocks (the NL
paper's tables are video models, GCNet's whole Mask R-CNN detectors), so the presets are held to a hand
derivation of what each block adds to ResNet-50; one block per stage of a tiny net is derived layer by
layer and held against the walker and fvcore's count of the reference net; the check (fvcore and
FlopCounterMode, exact per layer) runs at three sizes, one off the stage strides, batch 1 and 2, on both
attention paths; the attention scores are counted in attention memory and the forward memory is held
against the live-tensor tracker; bad values are one-line errors.
"""

from __future__ import annotations

import re

import pytest

import vitcost
from vitcost import estimate
from vitcost.analytic.memory import predict_memory
from vitcost.analytic.registry import family_named, resolution_exponent
from vitcost.errors import SpecError
from vitcost.specs import ResNetSpec
from vitcost.vocab import Kernel
from vitcost.zoo import get_preset

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from vitcost.cli import main  # noqa: E402
from vitcost.measure.check import check_model  # noqa: E402
from vitcost.measure.memory import measure_forward_memory  # noqa: E402
from vitcost.nets import build  # noqa: E402

BN = 2  # fvcore's batchnorm handle: 2 per element of an eval-mode affine BatchNorm
F32 = 4
# torchvision's (and timm's) ResNet-50: 25,557,032 parameters
RESNET50_PARAMS = 25_557_032
PRESETS = ("resnet50_nl1", "resnet50_nl5", "resnet50_nl10")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def non_local_by_hand(b: int, c: int, n: int, m: int, reduction: int = 2) -> tuple[int, int, int]:
    """One embedded-Gaussian block on b images of c channels and n positions, m keys: (MACs, attention
    scores, params). theta, phi, g: 1x1 convs c -> c' = c / reduction with bias (b*n*c*c' MACs each);
    theta^T phi and the product with g: b*n*m*c' MACs each, b*n*m scores; W: 1x1 conv c' -> c without
    bias (b*n*c'*c MACs); BatchNorm: 2c params."""
    ck = c // reduction
    macs = 3 * b * n * c * ck + 2 * b * n * m * ck + b * n * ck * c
    params = 3 * (c * ck + ck) + ck * c + 2 * c
    return macs, b * n * m, params


# ---------------------------------------------------------------------------------------------
# Placement, as the paper places the blocks


@pytest.mark.parametrize(("model", "paths"), [
    ("resnet50_nl1", ["layer3.4.nl"]),  # right before res4's last residual block
    # after every other residual block, ending with the stage's last (video-nonlocal-net, mmaction2)
    ("resnet50_nl5", ["layer2.1.nl", "layer2.3.nl", "layer3.1.nl", "layer3.3.nl", "layer3.5.nl"]),
    ("resnet50_nl10", [f"layer2.{i}.nl" for i in range(4)] + [f"layer3.{i}.nl" for i in range(6)]),
])
def test_blocks_sit_where_the_paper_puts_them(model: str, paths: list[str]) -> None:
    net = build(model, 224, device="meta")
    assert [name for name, _ in net.named_modules() if name.endswith(".nl")] == paths
    attn = [op.path for op in estimate(model, 224).ops if op.kind == "attention"]
    assert attn == paths


# ---------------------------------------------------------------------------------------------
# Hand derivations


@pytest.mark.parametrize("subsample", [False, True])
@pytest.mark.parametrize(("b", "res"), [(1, 64), (2, 97)])
def test_one_block_per_stage_by_hand(b: int, res: int, subsample: bool) -> None:
    """A two-stage ResNet of width 8 with a block after each stage's bottleneck: stage 0 has 32 channels
    on a g1 x g1 grid, g1 = ceil(ceil(res/2)/2), stage 1 64 channels on g2 = ceil(g1/2); subsampling
    max-pools phi and g 2x2 (floor(g/2) per side)."""
    p, classes = 8, 10
    spec = ResNetSpec(depths=(1, 1), width=p, num_classes=classes, nl_every=(1, 1), nl_subsample=subsample)
    half = -(-res // 2)  # the stem conv: ceil(res/2)
    g1 = -(-half // 2)  # the max pool
    g2 = -(-g1 // 2)
    counts, params, scores = {}, 0, 0
    for prefix, c, g in (("layer1.0.nl", 4 * p, g1), ("layer2.0.nl", 8 * p, g2)):
        n = g * g
        m = (g // 2) ** 2 if subsample else n
        ck = c // 2
        counts |= {f"{prefix}.theta": b * n * c * ck, f"{prefix}.phi": b * n * c * ck, f"{prefix}.g": b * n * c * ck,
                   prefix: 2 * b * n * m * ck, f"{prefix}.w": b * n * ck * c, f"{prefix}.bn": BN * b * n * c}
        macs, s, par = non_local_by_hand(b, c, n, m)
        assert macs == sum(v for k, v in counts.items() if k.startswith(prefix) and not k.endswith(".bn"))
        params += par
        scores += s
    est = estimate(spec, res, b)
    base = estimate(ResNetSpec(depths=(1, 1), width=p, num_classes=classes), res, b)
    assert {k: v for k, v in est.by_layer("fvcore").items() if ".nl" in k and v} == counts
    assert est.params - base.params == params
    assert est.params == sum(x.numel() for x in build(spec, res, device="meta").parameters())
    assert est.attn_matrix_bytes == scores * F32
    r = check_model(spec, res, batch=b, method="real")  # fvcore's jit trace of the real net, per layer
    assert {k: v for k, v in r.counts.self_counts("fvcore", "fvcore").items() if ".nl" in k and v} == counts


def test_presets_by_hand() -> None:
    """ResNet-50 at 224 reaches res3 on 28x28 (512 channels) and res4 on 14x14 (1024 channels).
    Subsampled blocks (nl5, nl10) attend to 14x14 keys in res3 and 7x7 in res4; nl1's one res4 block to
    all 14x14 positions."""
    res3, res4 = (512, 28 * 28), (1024, 14 * 14)
    layouts = {"resnet50_nl1": [(res4, 196)],
               "resnet50_nl5": [(res3, 196)] * 2 + [(res4, 49)] * 3,
               "resnet50_nl10": [(res3, 196)] * 4 + [(res4, 49)] * 6}
    base = estimate("resnet50", 224)
    for model, blocks in layouts.items():
        est = estimate(model, 224)
        hand = [non_local_by_hand(1, c, n, m) for (c, n), m in blocks]
        assert est.macs - base.macs == sum(h[0] for h in hand), model
        assert est.params == RESNET50_PARAMS + sum(h[2] for h in hand), model
        assert est.attn_matrix_bytes == sum(h[1] for h in hand) * F32, model
    # the rounded figures the presets' rows show
    figures = {m: (round(estimate(m, 224).params / 1e6, 2), round(estimate(m, 224).count("fvcore") / 1e9, 2))
               for m in PRESETS}
    assert figures == {"resnet50_nl1": (27.66, 4.56), "resnet50_nl5": (32.91, 6.36), "resnet50_nl10": (40.27, 8.60)}
    assert all(get_preset(m).params_m is None and get_preset(m).gmacs is None for m in PRESETS)  # none published


# ---------------------------------------------------------------------------------------------
# The check: exact per layer against fvcore and FlopCounterMode


TINY = ResNetSpec(depths=(1, 2, 3, 1), width=8, num_classes=10, nl_every=(0, 2, 1))
TINY_SUB = ResNetSpec(depths=(2, 2, 1), width=8, num_classes=10, nl_every=(1, 2), nl_reduction=4, nl_subsample=True)
# every size once (97: no stride divides it), batch 1 and 2, both attention paths
REAL_RUNS = [(224, 1, "math", "fvcore"), (97, 2, "sdpa", "torch"), (160, 2, "math", "macs"), (97, 1, "math", "fvcore"),
             (160, 1, "sdpa", "fvcore")]


@pytest.mark.parametrize("spec", [TINY, TINY_SUB], ids=["all_keys", "subsampled"])
@pytest.mark.parametrize(("res", "batch", "attn", "convention"), REAL_RUNS)
def test_tiny_variants_pass_exactly_on_a_real_forward(spec, res: int, batch: int, attn: str, convention: str) -> None:
    r = check_model(spec, res, batch=batch, attn=attn, convention=convention, method="real")
    assert r.method == "real" and r.counts.fvcore_via == "jit"
    assert r.status == "PASS", r.first_mismatch
    assert r.analytic == r.fvcore == r.torch > 0
    assert all(layer.ok(0) for layer in r.layers)
    assert any(layer.path.endswith(".nl") for layer in r.layers)


@pytest.mark.parametrize("model", PRESETS)
def test_presets_pass_exactly_on_meta(model: str, passes_exactly) -> None:
    for attn in ("math", "sdpa"):
        passes_exactly(model, 224, attn=attn, method="meta")


# ---------------------------------------------------------------------------------------------
# Memory: the reference net's forward against the live-tensor tracker


MEMORY_CASES = [
    (ResNetSpec(depths=(1, 2, 3, 1), width=16, num_classes=10, nl_every=(0, 1, 3)), 128),
    (ResNetSpec(depths=(1, 2, 3, 1), width=16, num_classes=10, nl_every=(0, 1, 3), nl_subsample=True), 97),
    (ResNetSpec(depths=(2, 2), width=8, num_classes=10, nl_every=(1, 2)), 112),  # the scores hold the peak
    (ResNetSpec(depths=(2, 2), width=8, num_classes=10, nl_every=(2, 1), nl_reduction=4, nl_subsample=True), 160),
]




@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("spec", "res"), MEMORY_CASES)
@pytest.mark.parametrize("attn", ["math", "sdpa"])
@pytest.mark.parametrize("batch", [1, 2])
def test_predicted_vs_measured_forward_memory(spec, res: int, attn: str, batch: int) -> None:
    net = build(spec, res, attn=attn).eval()
    measured = measure_forward_memory(net, torch.randn(batch, 3, res, res))
    est = estimate(spec, res, batch)
    pred = predict_memory(est, Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes
    if attn == "math":  # the softmax outputs are the scores, batch * N * M of them per block
        assert pred.stored_score_bytes == est.attn_matrix_bytes > 0
    else:
        assert measured.score_bytes == 0
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


def test_scores_hold_the_peak_at_high_resolution() -> None:
    """At 1024 px nl1's res4 block has 64 x 64 = 4,096 positions: 4096^2 * 4 B = 64 MiB of scores, held
    twice at the softmax (raw and normalised), above every convolution step."""
    pred = predict_memory(estimate("resnet50_nl1", 1024), Kernel.math)
    assert pred.stored_score_bytes == 4096**2 * F32
    assert pred.peak_at.startswith("layer3.4.nl")
    assert predict_memory(estimate("resnet50_nl1", 1024), Kernel.sdpa).stored_score_bytes == 0


# ---------------------------------------------------------------------------------------------
# Complexity and symbols


def test_complexity_shows_the_quadratic_term() -> None:
    resnet = family_named("resnet")
    assert resnet.complexity(get_preset("resnet50").spec) == "O(HW·Cin·Cout·K²)"
    text = resnet.complexity(get_preset("resnet50_nl5").spec)
    assert text == "O(HW·Cin·Cout·K²) + O((HW)²·C)" and resolution_exponent(text) == 4
    # on the lattice the attention MACs grow 16x per doubling of the side, the convolutions' 4x
    spec = get_preset("resnet50_nl5").spec
    lat, _ = resnet.lattice(spec)
    attn = [sum(op.cost.macs for op in estimate(spec, lat * k).ops if op.kind == "attention") for k in (1, 2, 4)]
    assert attn[1] == 16 * attn[0] and attn[2] == 16 * attn[1]


@pytest.mark.parametrize("model", PRESETS)
def test_preset_formula_agrees_with_the_integer_walk(model: str) -> None:
    expr = vitcost.formula(model)
    s = {x.name: x for x in expr.free_symbols}
    for h, w in [(224, 224), (97, 160)]:
        assert int(expr.subs({s["H"]: h, s["W"]: w})) == estimate(model, (h, w)).macs


# ---------------------------------------------------------------------------------------------
# Bad values


@pytest.mark.parametrize(("fields", "message"), [
    ({"nl_every": (0, 1, 1, 0, 1)}, "stage 4 does not exist"),
    ({"nl_every": (0, 0, 7, 0)}, r"stage 2 has 6 bottlenecks; .* k from 1 to 6"),
    ({"nl_every": (0, -1)}, r"nl_every\[1\] = -1"),
    ({"nl_every": (0, 2), "nl_reduction": 3}, "nl_reduction = 3 does not divide stage 1's 512 channels"),
    ({"nl_reduction": 0}, "nl_reduction must be positive"),
])
def test_spec_rejects_bad_values(fields: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        ResNetSpec(depths=(3, 4, 6, 3), **fields)


def test_reduction_is_only_checked_where_blocks_run() -> None:
    # 1024 divides res4's 1024 channels, not res3's 512 (which has no block)
    assert ResNetSpec(depths=(3, 4, 6, 3), nl_every=(0, 0, 5), nl_reduction=1024).non_local_after(2) == {4}
    with pytest.raises(SpecError, match="does not divide stage 1's 512"):
        ResNetSpec(depths=(3, 4, 6, 3), nl_every=(0, 1, 1), nl_reduction=1024)


@pytest.mark.parametrize(("argv", "message"), [
    (["compare", "-m", "resnet50", "--set", "resnet50:nl_every=0-0-7-0", "-r", "224"], "stage 2 has 6 bottlenecks"),
    (["compare", "-m", "resnet50", "--set", "resnet50:nl_every=0-2-2-0-1", "-r", "224"], "stage 4 does not exist"),
    (["check", "--method", "meta", "-m", "resnet50_nl5", "--set", "resnet50_nl5:nl_reduction=3", "-r", "224"],
     "does not divide stage 1's 512 channels"),
    # 16 px leaves res4 a 1x1 grid, which a 2x2 max pool cannot subsample
    (["compare", "-m", "resnet50_nl5", "-r", "16"], "stage 2's grid is 1x1"),
])
def test_cli_errors_are_one_line_exit_2(capsys, argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith("vitcost: error: ") and re.search(message, err), err


def test_cli_models_and_compare(capsys) -> None:
    code, out, err = run(capsys, "models")
    assert code == 0, err
    for name in PRESETS:
        assert name in out
    code, out, err = run(capsys, "compare", "-m", "resnet50", *PRESETS, "-r", "224", "--format", "json")
    assert code == 0, err
    import json

    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["resnet50"]["attn_matrix_elems"] == 0
    # nl1: one res4 block, 196 x 196 scores; nl5: 2 x 784 x 196 + 3 x 196 x 49
    assert rows["resnet50_nl1"]["attn_matrix_elems"] == 196 * 196
    assert rows["resnet50_nl5"]["attn_matrix_elems"] == 2 * 784 * 196 + 3 * 196 * 49
    assert "O((HW)²·C)" in rows["resnet50_nl10"]["complexity"]
