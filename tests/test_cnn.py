"""Convolution baselines: ConvNeXt (Liu et al. 2022) and ResNet-50 (He et al. 2016).

One ConvNeXt block and two ResNet bottlenecks derived by hand, layer by layer, and held against the
walker and fvcore's own count of the reference nets; the check (fvcore and FlopCounterMode, exact per
layer) on tiny variants at sizes that do not divide evenly and on the real presets on meta; parameters
against the built nets; the presets against timm's published figures and the papers' rounded ones;
forward memory against the live-tensor tracker; and the convolution complexity in symbols.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import sympy

import vitcost
from vitcost import estimate
from vitcost.analytic.memory import predict_memory
from vitcost.analytic.registry import family_named, resolution_exponent
from vitcost.errors import SpecError
from vitcost.specs import ConvNeXtSpec, ResNetSpec
from vitcost.vocab import Kernel
from vitcost.zoo import get_preset

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from vitcost.cli import main  # noqa: E402
from vitcost.measure.check import check_model  # noqa: E402
from vitcost.measure.memory import measure_forward_memory  # noqa: E402
from vitcost.nets import build  # noqa: E402

PRESETS = ("convnext_tiny", "convnext_small", "convnext_base", "resnet50")
# fvcore's handles: 5 per element of an affine LayerNorm (norm_flop_counter), 2 per element of an
# eval-mode affine BatchNorm (batchnorm_flop_jit), 1 per MAC of conv / linear.
LN, BN = 5, 2

# Tiny variants for real forwards: every stage present, widths small enough for well under a second.
TINY_CONVNEXT = ConvNeXtSpec(dims=(16, 32, 64, 128), depths=(1, 2, 1, 1), num_classes=10)
TINY_RESNET = ResNetSpec(depths=(1, 2, 1, 1), width=8, num_classes=10)


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# ---------------------------------------------------------------------------------------------
# Hand derivations, held against the walker and against fvcore on the real net


def convnext_one_block_by_hand(b: int, res: int, c: int, classes: int) -> tuple[dict[str, int], int]:
    """A one-stage, one-block ConvNeXt on [b, 3, res, res]: (fvcore count per layer, params).
    Stem: 4x4 stride-4 conv (3 -> C) on a g x g grid, g = floor((res - 4)/4) + 1, then LayerNorm.
    Block (ConvNeXt Fig. 4): 7x7 depthwise conv (one input channel per output: g^2*C*49 MACs),
    LayerNorm, Linear C -> 4C, GELU, Linear 4C -> C, layer scale gamma (C params), residual.
    Head: pool, LayerNorm of C, Linear C -> classes."""
    g = (res - 4) // 4 + 1
    px = b * g * g
    counts = {
        "stem.0": px * c * 3 * 4 * 4,
        "stem.1": LN * px * c,
        "stages.0.blocks.0.conv_dw": px * c * 7 * 7,
        "stages.0.blocks.0.norm": LN * px * c,
        "stages.0.blocks.0.mlp.fc1": px * c * 4 * c,
        "stages.0.blocks.0.mlp.fc2": px * 4 * c * c,
        "head.norm": LN * b * c,
        "head.fc": b * c * classes,
    }
    params = ((3 * 16 * c + c) + 2 * c  # stem conv + bias, norm
              + (c * 49 + c) + 2 * c + (c * 4 * c + 4 * c) + (4 * c * c + c) + c  # dw, norm, fc1, fc2, gamma
              + 2 * c + (c * classes + classes))  # head
    return counts, params


def resnet_two_bottlenecks_by_hand(b: int, res: int, p: int, classes: int) -> tuple[dict[str, int], int]:
    """ResNet with one bottleneck in each of two stages (width p, expansion 4) on [b, 3, res, res]:
    (fvcore count per layer, params). Every stride-2 layer maps n to ceil(n/2): stem conv 7x7/2 (g1),
    max pool 3x3/2 (g2), layer2's 3x3/2 and 1x1/2 projection (g3). A conv of Cin -> Cout, kernel K on an
    output grid Ho x Wo: Ho*Wo*Cin*Cout*K^2 MACs; each BatchNorm BN per output element; no conv bias."""
    g1 = -(-res // 2)
    g2 = -(-g1 // 2)
    g3 = -(-g2 // 2)
    n1, n2, n3 = b * g1 * g1, b * g2 * g2, b * g3 * g3
    counts = {
        "conv1": n1 * 3 * p * 49, "bn1": BN * n1 * p,
        # layer1.0: p -> p -> p -> 4p at stride 1, projection p -> 4p (the channels change)
        "layer1.0.conv1": n2 * p * p, "layer1.0.bn1": BN * n2 * p,
        "layer1.0.conv2": n2 * p * p * 9, "layer1.0.bn2": BN * n2 * p,
        "layer1.0.conv3": n2 * p * 4 * p, "layer1.0.bn3": BN * n2 * 4 * p,
        "layer1.0.downsample.0": n2 * p * 4 * p, "layer1.0.downsample.1": BN * n2 * 4 * p,
        # layer2.0: 4p -> 2p (on the input grid) -> 2p (stride 2) -> 8p, projection 4p -> 8p at stride 2
        "layer2.0.conv1": n2 * 4 * p * 2 * p, "layer2.0.bn1": BN * n2 * 2 * p,
        "layer2.0.conv2": n3 * 2 * p * 2 * p * 9, "layer2.0.bn2": BN * n3 * 2 * p,
        "layer2.0.conv3": n3 * 2 * p * 8 * p, "layer2.0.bn3": BN * n3 * 8 * p,
        "layer2.0.downsample.0": n3 * 4 * p * 8 * p, "layer2.0.downsample.1": BN * n3 * 8 * p,
        "fc": b * 8 * p * classes,
    }
    convs = 3 * p * 49 + (p * p + 9 * p * p + 4 * p * p + 4 * p * p) + (8 * p * p + 36 * p * p + 16 * p * p
                                                                         + 32 * p * p)
    bns = 2 * (p + (p + p + 4 * p + 4 * p) + (2 * p + 2 * p + 8 * p + 8 * p))  # weight and bias per channel
    return counts, convs + bns + 8 * p * classes + classes


@pytest.mark.parametrize(("b", "res"), [(1, 224), (2, 97)])
def test_one_convnext_block_by_hand(b: int, res: int) -> None:
    c, classes = 16, 10
    spec = ConvNeXtSpec(dims=(c,), depths=(1,), num_classes=classes)
    counts, params = convnext_one_block_by_hand(b, res, c, classes)
    est = estimate(spec, res, b)
    assert {k: v for k, v in est.by_layer("fvcore").items() if v} == counts
    assert est.params == params == _numel(build(spec, res, device="meta"))
    r = check_model(spec, res, batch=b, method="real")  # fvcore's jit trace of the real net, per layer
    assert r.counts.fvcore_via == "jit"
    assert r.counts.self_counts("fvcore", "fvcore") == counts


@pytest.mark.parametrize(("b", "res"), [(1, 224), (2, 97)])
def test_two_resnet_bottlenecks_by_hand(b: int, res: int) -> None:
    p, classes = 8, 10
    spec = ResNetSpec(depths=(1, 1), width=p, num_classes=classes)
    counts, params = resnet_two_bottlenecks_by_hand(b, res, p, classes)
    est = estimate(spec, res, b)
    assert {k: v for k, v in est.by_layer("fvcore").items() if v} == counts
    assert est.params == params == _numel(build(spec, res, device="meta"))
    r = check_model(spec, res, batch=b, method="real")
    assert r.counts.fvcore_via == "jit"
    assert r.counts.self_counts("fvcore", "fvcore") == counts
    # FlopCounterMode counts 2 per conv/linear MAC and no BatchNorm
    macs = sum(v for k, v in counts.items() if "bn" not in k and "downsample.1" not in k)
    assert r.counts.total("torch", "torch") == 2 * macs == est.count("torch")


# ---------------------------------------------------------------------------------------------
# The check: exact per layer against fvcore and FlopCounterMode


# every size once, batch 1 and 2, both attention paths (ignored by a CNN, but both must build and pass)
REAL_RUNS = [(224, 1, "math", "fvcore"), (97, 2, "sdpa", "torch"), (160, 2, "math", "macs")]


@pytest.mark.parametrize("spec", [TINY_CONVNEXT, TINY_RESNET], ids=["convnext", "resnet"])
@pytest.mark.parametrize(("res", "batch", "attn", "convention"), REAL_RUNS)
def test_tiny_variants_pass_exactly_on_a_real_forward(spec, res: int, batch: int, attn: str,
                                                      convention: str) -> None:
    r = check_model(spec, res, batch=batch, attn=attn, convention=convention, method="real")
    assert r.method == "real" and r.counts.fvcore_via == "jit"
    assert r.status == "PASS", r.first_mismatch
    assert r.analytic == r.fvcore == r.torch > 0
    assert all(layer.ok(0) for layer in r.layers)


@pytest.mark.parametrize("model", PRESETS)
def test_presets_pass_exactly_on_meta(model: str, passes_exactly) -> None:
    for attn in ("math", "sdpa"):
        passes_exactly(model, 224, attn=attn, method="meta")


@pytest.mark.parametrize("model", PRESETS)
def test_params_equal_the_built_nets(model: str) -> None:
    assert _numel(build(model, 224, device="meta")) == estimate(model, 224).params


# ---------------------------------------------------------------------------------------------
# Published figures

# (params M, GMACs) as the papers print them (published.md): ConvNeXt Table 1 and the 28.6M for
# ConvNeXt-T; ResNet-50 from the ResNet paper / timm.
PAPER = {"convnext_tiny": (28.6, 4.5), "convnext_small": (50.0, 8.7), "convnext_base": (89.0, 15.4),
         "resnet50": (25.6, 4.1)}


@pytest.mark.parametrize("model", PRESETS)
def test_presets_match_timm_published_figures(model: str) -> None:
    """The preset lines carry timm's results-CSV figures (fvcore, eval mode): equal to 2 decimals."""
    p = get_preset(model)
    est = estimate(model, p.res)
    assert round(est.params / 1e6, 2) == p.params_m
    assert round(est.count("fvcore") / 1e9, 2) == p.gmacs


@pytest.mark.parametrize("model", PRESETS)
def test_presets_within_half_a_percent_of_the_papers(model: str) -> None:
    params_m, gmacs = PAPER[model]
    est = estimate(model, 224)
    assert est.params / 1e6 == pytest.approx(params_m, rel=0.005)
    if model == "convnext_tiny":
        # 4.47 GMACs (timm, fvcore) is 0.7% below the paper's 4.5: the paper rounds to one decimal
        # (ConvNeXtSpec's docstring)
        assert round(est.count("fvcore") / 1e9, 1) == gmacs
        assert est.count("fvcore") / 1e9 == pytest.approx(gmacs, rel=0.01)
    else:
        assert est.count("fvcore") / 1e9 == pytest.approx(gmacs, rel=0.005)


# ---------------------------------------------------------------------------------------------
# Memory: the reference nets' forward against the live-tensor tracker


MEMORY_CASES = [
    (replace(TINY_CONVNEXT, dims=(32, 64, 128, 256)), 128),
    (ConvNeXtSpec(dims=(8, 64, 64, 64), depths=(1, 2, 1, 1), num_classes=10), 97),  # stage 1 holds the peak
    (ConvNeXtSpec(dims=(32, 64), depths=(2, 1), num_classes=10, layer_scale=False), 72),
    (replace(TINY_RESNET, width=16), 128),
    (ResNetSpec(depths=(1, 2), width=4, expansion=8, num_classes=10), 97),
]




@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("spec", "res"), MEMORY_CASES)
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_predicted_vs_measured_forward_memory(spec, res: int, attn: str) -> None:
    net = build(spec, res, attn=attn).eval()
    measured = measure_forward_memory(net, torch.randn(2, 3, res, res))
    pred = predict_memory(estimate(spec, res, 2), Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes == 0  # no attention
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes == 0
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


# ---------------------------------------------------------------------------------------------
# Complexity and symbols


def test_conv_formula_is_the_course_complexity() -> None:
    expr = vitcost.formula("conv")
    s = {x.name: x for x in expr.free_symbols}
    assert set(s) == {"H", "W", "Cin", "Cout", "K"}
    assert sympy.simplify(expr - s["H"] * s["W"] * s["Cin"] * s["Cout"] * s["K"] ** 2) == 0


@pytest.mark.parametrize("model", ["convnext_tiny", "resnet50"])
def test_preset_formula_agrees_with_the_integer_walk(model: str) -> None:
    expr = vitcost.formula(model)
    s = {x.name: x for x in expr.free_symbols}
    for h, w in [(224, 224), (97, 160)]:
        assert int(expr.subs({s["H"]: h, s["W"]: w})) == estimate(model, (h, w)).macs


@pytest.mark.parametrize("family", ["convnext", "resnet"])
def test_complexity_is_quadratic_in_the_side(family: str) -> None:
    spec = {"convnext": TINY_CONVNEXT, "resnet": TINY_RESNET}[family]
    text = family_named(family).complexity(spec)
    assert text == "O(HW·Cin·Cout·K²)" and resolution_exponent(text) == 2
    # on the lattice every layer's MACs are a multiple of H*W (the head's are constant): second
    # differences over R, 2R, 4R grow exactly 4x, as H*W does
    lat, _ = family_named(family).lattice(spec)
    m = [estimate(spec, lat * k).macs for k in (1, 2, 4)]
    assert (m[2] - m[1]) == 4 * (m[1] - m[0])


def test_specs_reject_bad_designs() -> None:
    with pytest.raises(SpecError, match="kernel"):
        ConvNeXtSpec(dims=(16,), depths=(1,), kernel=4)
    with pytest.raises(SpecError, match="equal length"):
        ConvNeXtSpec(dims=(16, 32), depths=(1,))
    with pytest.raises(SpecError, match="depth"):
        ResNetSpec(depths=(3, 0))
    with pytest.raises(SpecError, match="at least 32x32"):
        estimate(TINY_CONVNEXT, 31)


# ---------------------------------------------------------------------------------------------
# The CLI


def test_cli_models_formula_and_compare(capsys) -> None:
    code, out, err = run(capsys, "models")
    assert code == 0, err
    for name in PRESETS:
        assert name in out
    code, out, err = run(capsys, "formula", "conv")
    assert code == 0 and "Cin" in out and "Cout" in out, err
    code, out, err = run(capsys, "compare", "-m", *PRESETS, "--res", "224", "512", "1024", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["model"], r["res"]) for r in rows] == [(m, r) for m in PRESETS for r in (224, 512, 1024)]
    for r in rows:
        assert r["attn_matrix_elems"] == 0 and r["activation_peak_bytes"] > 0
        # MACs grow with the pixels: (R / 224)^2, less the constant head (under 0.1% of the total)
        assert r["growth"] == pytest.approx((r["res"] / 224) ** 2, rel=0.01)
