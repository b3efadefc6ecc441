"""BiFormer (Zhu et al. 2023): bi-level routing attention against an explicit per-region loop, one model's
MACs by hand, exact per-layer agreement with fvcore and FlopCounterMode (sizes that pad, batch 1 and 2,
math and sdpa), parameters, the published figures, memory against the live-tensor tracker, the complexity
class, the spec's rules and the command line."""

from __future__ import annotations

import json
import re

import pytest

import vitcost
from vitcost.analytic.biformer import lattice
from vitcost.analytic.memory import predict_memory
from vitcost.analytic.registry import family_named
from vitcost.errors import SpecError
from vitcost.specs import BiFormerSpec
from vitcost.vocab import Kernel
from vitcost.zoo import PRESETS, get_preset

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from vitcost.cli import main  # noqa: E402
from vitcost.measure.check import check_model  # noqa: E402
from vitcost.measure.memory import measure_forward_memory  # noqa: E402
from vitcost.nets import build  # noqa: E402
from vitcost.nets.biformer import BiLevelRoutingAttention  # noqa: E402

BIFORMER_PRESETS = ("biformer_tiny", "biformer_small", "biformer_base")
F32 = 4

# Small variants: routing with 2 heads (top-1, top-2 of 4 regions) then global attention; routing with one
# head and then two (top-2, 4, 9 of 9 regions) then global attention with 4 heads.
TINY_A = BiFormerSpec(dims=(16, 32, 64), depths=(2, 1, 1), topks=(1, 2, 0), n_win=2, head_dim=8, global_heads=2,
                      num_classes=10)
TINY_B = BiFormerSpec(dims=(16, 32, 64, 64), depths=(1, 1, 1, 1), topks=(2, 4, 9, 0), n_win=3, head_dim=16,
                      global_heads=4, num_classes=10)
# One routing stage: C = 8, 2 heads of 4, 2 x 2 regions, each attending to its top 2, LCE kernel 5.
ONE_STAGE = BiFormerSpec(dims=(8,), depths=(1,), topks=(2,), n_win=2, head_dim=4, num_classes=10)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# What the routing attention computes


def loop_routing_attention(attn: BiLevelRoutingAttention, x: torch.Tensor, n_win: int, topk: int) -> torch.Tensor:
    """BRA restated per region and token from the paper's description: zero-pad x [1, h, w, C] to multiples
    of S; q, k, v from one linear; region query and key = means of q and k over the region's tokens; each
    region keeps the `topk` regions of the largest q_r . k_r; each of its tokens attends (per head, scaled
    by d^-0.5) to all tokens of those regions; + the depthwise conv of v over the padded grid; wo; crop."""
    _, h, w, c = x.shape
    hp, wp = -(-h // n_win) * n_win, -(-w // n_win) * n_win
    rh, rw = hp // n_win, wp // n_win
    xp = torch.zeros(hp, wp, c)
    xp[:h, :w] = x[0]
    q, k, v = attn.qkv.qkv(xp).split(c, dim=-1)
    cells = [[(r0 * rh + i, c0 * rw + j) for i in range(rh) for j in range(rw)]
             for r0 in range(n_win) for c0 in range(n_win)]
    q_r = torch.stack([torch.stack([q[t] for t in cell]).mean(0) for cell in cells])
    k_r = torch.stack([torch.stack([k[t] for t in cell]).mean(0) for cell in cells])
    picked = (q_r @ k_r.T).topk(topk, dim=-1).indices
    heads = attn.heads
    d = c // heads
    lepe = attn.lepe(v.permute(2, 0, 1)[None])[0].permute(1, 2, 0)
    out = torch.zeros(hp, wp, c)
    for r, cell in enumerate(cells):
        keys = [t for j in picked[r].tolist() for t in cells[j]]
        kk, vv = torch.stack([k[t] for t in keys]), torch.stack([v[t] for t in keys])
        for t in cell:
            per_head = [((q[t][s] @ kk[:, s].T) * d**-0.5).softmax(0) @ vv[:, s]
                        for s in (slice(i * d, (i + 1) * d) for i in range(heads))]
            out[t] = torch.cat(per_head)
    return attn.wo(out + lepe)[:h, :w]


@pytest.mark.parametrize("mode", ["math", "sdpa"])
@pytest.mark.parametrize("grid", [(6, 8), (5, 7)])
def test_routing_attention_equals_a_loop_over_regions(mode, grid):
    torch.manual_seed(0)
    h, w = grid
    padded = (-(-h // 2) * 2, -(-w // 2) * 2)
    attn = BiLevelRoutingAttention(8, 2, 2, 2, 5, grid, padded, mode)
    x = torch.randn(1, h, w, 8)
    with torch.no_grad():
        expected = loop_routing_attention(attn, x, 2, 2)
        got = attn(x)
    assert got.shape == (1, h, w, 8)
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# MACs by hand, and exactly what fvcore and FlopCounterMode count


def one_stage_macs(image: tuple[int, int]) -> int:
    """ONE_STAGE (C = 8, MLP 24, 10 classes, S = 2, top 2, LCE 5x5) on `image`:
    stem       conv 3 -> 4 (3x3, stride 2, pad 1): ceil(H/2) ceil(W/2) * 4 * 3 * 9; conv 4 -> 8 to the
               h x w grid (ceil again): hw * 8 * 4 * 9
    pos_embed  3x3 depthwise: hw * 8 * 9
    qkv        on the grid padded to hp x wp (multiples of 2): hp wp * 8 * 24
    affinity   [S^2, C] @ [C, S^2]: 4 * 4 * 8
    attention  each of the 4 regions' w2 = hp wp / 4 queries against 2 w2 gathered keys, QK and AV:
               2 * 4 * w2 * 2 w2 * 8
    LCE        5x5 depthwise on the padded grid: hp wp * 8 * 25;  wo: hp wp * 8 * 8
    MLP        2 * hw * 8 * 24;  head: 8 * 10"""
    h1, w1 = -(-image[0] // 2), -(-image[1] // 2)
    h, w = -(-h1 // 2), -(-w1 // 2)
    hp, wp = -(-h // 2) * 2, -(-w // 2) * 2
    w2 = hp * wp // 4
    return (h1 * w1 * 4 * 3 * 9 + h * w * 8 * 4 * 9 + h * w * 8 * 9 + hp * wp * 8 * 24 + 4 * 4 * 8
            + 2 * 4 * w2 * 2 * w2 * 8 + hp * wp * 8 * 25 + hp * wp * 8 * 8 + 2 * h * w * 8 * 24 + 8 * 10)


@pytest.mark.parametrize("image", [(32, 32), (36, 44)])  # grids 8x8 (no padding) and 9x11 (padded to 10x12)
def test_one_stage_macs_by_hand(image):
    expected = one_stage_macs(image)
    assert vitcost.estimate(ONE_STAGE, image).macs == expected
    for attn in ("math", "sdpa"):
        r = check_model(ONE_STAGE, image, batch=1, attn=attn, convention="macs", method="real")
        assert r.status == "PASS", r.first_mismatch
        assert r.analytic == r.fvcore == r.torch == expected


SIZES = ((TINY_A, (64, 72, (52, 60))), (TINY_B, (96, 112, (100, 116))))
CHECK_RUNS = [(spec, res, batch, attn) for spec, sizes in SIZES for res in sizes
              for batch, attn in ((1, "math"), (2, "sdpa"))] + [(TINY_A, (52, 60), 2, "math"), (TINY_B, 112, 1, "sdpa")]


@pytest.mark.parametrize(("spec", "res", "batch", "attn"), CHECK_RUNS)
def test_tiny_variants_check_exactly_per_layer(spec, res, batch, attn, passes_exactly):
    """Sizes whose routing grids divide S (TINY_A 64: 16, 8; TINY_B 96: 24, 12, 6) and that pad (TINY_A 72:
    18, 9 -> 10; 52x60: 13x15 -> 14x16, 7x8 -> 8x8; TINY_B 112: 28 -> 30, 14 -> 15, 7 -> 9)."""
    r = passes_exactly(spec, res, batch=batch, attn=attn)
    assert r.analytic == r.fvcore == r.torch > 0
    layers = {layer.path for layer in r.layers}
    assert "stages.0.0.attn.router" in layers  # the affinity is counted where the net computes it
    # the gather, top-k and region means are not multiply-accumulates: neither counter counts them
    assert "stages.0.0.attn.kv_gather" not in layers


def test_a_training_step_checks_exactly_per_layer():
    """FlopCounterMode over a training step: the routing's affinity has no backward (it reads detached
    region means), the attention and the linears have theirs."""
    r = check_model(TINY_A, (52, 60), batch=2, attn="math", convention="torch", method="real", mode="train")
    assert r.status == "PASS", r.first_mismatch
    router = next(layer for layer in r.layers if layer.path == "stages.0.0.attn.router")
    assert router.backward == (0, 0) and router.forward[0] > 0


@pytest.mark.parametrize(("model", "res", "attn"), [(m, 224, "math") for m in BIFORMER_PRESETS]
                         + [("biformer_tiny", 224, "sdpa"), ("biformer_tiny", 256, "math")])
def test_presets_check_exactly_on_meta(model, res, attn):
    """At 224 every routing grid (56, 28, 14) divides 7; at 256 they (64, 32, 16) pad to 70, 35, 21."""
    r = check_model(model, res, batch=1, attn=attn, convention="fvcore", method="meta")
    assert r.method == "meta" and r.status == "PASS", r.first_mismatch
    assert r.layers and all(layer.ok(0) for layer in r.layers)


# ---------------------------------------------------------------------------------------------
# Parameters and published figures


def test_params_by_hand_tiny_a():
    """TINY_A: C = 16, 32, 64; MLP ratio 3; LCE 5x5; 10 classes. A routing block: pos_embed 9C + C, two norms
    4C, qkv 3C^2 + 3C, LCE 25C + C, wo C^2 + C, MLP 6C^2 + 3C + C. The global block: qkv 3C^2 (no bias),
    proj C^2 + C, the rest as a routing block. Stem conv 3 -> 8 and 8 -> 16 (3x3, bias) with BatchNorms; a
    3x3 conv + BatchNorm between stages; the final BatchNorm and the head. None follows the resolution."""
    def block(c: int, routing: bool) -> int:
        attn = (3 * c * c + 3 * c) + (c * c + c) if routing else 3 * c * c + (c * c + c)
        return 10 * c + 4 * c + attn + 26 * c + (6 * c * c + 4 * c)

    stem = (3 * 8 * 9 + 8) + 2 * 8 + (8 * 16 * 9 + 16) + 2 * 16
    downs = (16 * 32 * 9 + 32 + 2 * 32) + (32 * 64 * 9 + 64 + 2 * 64)
    expected = stem + 2 * block(16, True) + block(32, True) + block(64, False) + downs + 2 * 64 + 64 * 10 + 10
    for res in (64, 52):
        built = sum(p.numel() for p in build(TINY_A, res).parameters())  # (presets: tests/test_nets.py)
        assert built == vitcost.estimate(TINY_A, res).params == expected


def test_presets_match_published_params_and_macs(published_cells):
    """The paper's Table 1 (and the repository's README): 13.1M / 2.2G, 25.5M / 4.5G, 56.8M / 9.8G, rounded to
    one decimal (published.md's BiFormer row). Params and GMACs (MACs, and the fvcore count with the norms)
    round to them."""
    cells = published_cells("BiFormer-T / S / B, 224")
    params = [float(x) for x in re.findall(r"([\d.]+)M", cells[2])]
    gmacs = [float(x) for x in cells[3].split("/")]
    figures = dict(zip(BIFORMER_PRESETS, zip(params, gmacs)))
    assert set(figures) == set(BIFORMER_PRESETS)
    for name, (params_m, gmacs) in figures.items():
        est = vitcost.estimate(name, 224)
        assert get_preset(name).params_m == params_m and get_preset(name).gmacs == gmacs
        assert round(est.params / 1e6, 1) == params_m, name
        for count in (est.macs, est.count("fvcore")):
            assert round(count / 1e9, 1) == gmacs, name
            assert abs(count / 1e9 - gmacs) / gmacs < 0.02, name


# ---------------------------------------------------------------------------------------------
# Memory: predicted against the live-tensor tracker on CPU

MEMORY_CASES = [(TINY_A, 64, "math", "fp32"), (TINY_A, 64, "sdpa", "fp32"), (TINY_A, (52, 60), "math", "fp32"),
                (TINY_A, (52, 60), "sdpa", "bf16"), (TINY_B, 112, "math", "fp32"), (TINY_B, 96, "sdpa", "fp32"),
                (ONE_STAGE, (36, 44), "math", "bf16")]


@pytest.mark.parametrize(("spec", "res", "attn", "dtype"), MEMORY_CASES)
@pytest.mark.parametrize("batch", [1, 2])
def test_predicted_vs_measured_forward_memory(spec, res, attn, dtype, batch):
    h, w = (res, res) if isinstance(res, int) else res
    net = build(spec, (h, w), attn=attn, dtype=dtype).eval()
    measured = measure_forward_memory(net, torch.randn(batch, 3, h, w, dtype=next(net.parameters()).dtype))
    pred = predict_memory(vitcost.estimate(spec, (h, w), batch, dtype), Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


def test_score_bytes_by_hand():
    """TINY_A at 52x60, batch 2, math: grids 13x15 (padded to 14x16: 4 regions of 7x8 = 56 tokens), 7x8 (8x8:
    4 regions of 16 tokens), 4x4. Scores per routing layer: B * S^2 * heads * w2 * (k w2); global: B * heads * N^2.
    Stage 0 (2 blocks, 2 heads, top 1): 2 * 4 * 2 * 56 * 56; stage 1 (4 heads, top 2): 2 * 4 * 4 * 16 * 32;
    stage 2 (global, 2 heads, 16 tokens): 2 * 2 * 16 * 16."""
    per_layer = [2 * 4 * 2 * 56 * 56] * 2 + [2 * 4 * 4 * 16 * 32, 2 * 2 * 16 * 16]
    net = build(TINY_A, (52, 60)).eval()
    measured = measure_forward_memory(net, torch.randn(2, 3, 52, 60))
    pred = predict_memory(vitcost.estimate(TINY_A, (52, 60), 2))
    assert measured.score_bytes == pred.stored_score_bytes == sum(per_layer) * F32
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes == max(per_layer) * F32
    assert predict_memory(vitcost.estimate(TINY_A, (52, 60), 2), Kernel.sdpa).stored_score_bytes == 0


# ---------------------------------------------------------------------------------------------
# Complexity, lattice, spec rules, command line


def test_complexity_class_and_exponent():
    fam = family_named("biformer")
    spec = get_preset("biformer_tiny").spec
    assert fam.complexity(spec) == "O((HW)²·kC/S²)"
    assert fam.exponent(spec) == 4  # S fixed: the fine attention is k/S^2 of global attention's (HW)^2
    from dataclasses import replace

    assert fam.complexity(replace(spec, topks=(0, 0, 0, 0))) == "O((HW)²C)"


@pytest.mark.parametrize("model", ["biformer_tiny"])
def test_macs_on_the_lattice_are_quartic_in_the_side(model):
    """With S fixed, on the lattice (no padding, exact halvings) the MACs are a R^4 + b R^2 + c: the fine
    attention's 2 k C (hw)^2 / S^2, the linears and convs in hw, the affinity's S^4 C and the head. So
    M(n L) for n = 1..4 fits a n^4 + b n^2 + c exactly from three points."""
    step, _ = lattice(get_preset(model).spec)
    assert step == 224  # 4 * 2^3 = 32 for the halvings, 4 * 2^2 * 7 = 112 for stage 2's routing grid
    m = [vitcost.estimate(model, step * n).macs for n in (1, 2, 3, 4)]
    # solve a, b, c from n = 1, 2, 3 (exact rationals), then predict n = 4
    from fractions import Fraction as Fr

    d21, d31 = Fr(m[1] - m[0]), Fr(m[2] - m[0])
    a = (d31 - d21 * Fr(8, 3)) / (80 - 15 * Fr(8, 3))
    b = (d21 - 15 * a) / 3
    c = m[0] - a - b
    assert a * 256 + b * 16 + c == m[3] and a > 0


@pytest.mark.parametrize(("overrides", "match"), [
    ({"topks": (1, 50)}, "more than the 49 regions"), ({"topks": (1, -1)}, "topks"),
    ({"topks": (1,)}, "equal length"), ({"dims": (48, 64)}, "head_dim"), ({"global_heads": 3}, "global_heads"),
    ({"side_dwconv": 4}, "side_dwconv"), ({"n_win": 0}, "n_win"), ({"dims": (30, 64)}, "head_dim")])
def test_bad_specs_name_the_field(overrides, match):
    args = {"dims": (32, 64), "depths": (1, 1), "topks": (4, 0), **overrides}
    with pytest.raises(SpecError, match=match):
        BiFormerSpec(**args)


def test_a_grid_smaller_than_the_regions_is_refused():
    """biformer_tiny's stage 2 routes among 7x7 regions: its grid is ceil(R/16), at least 7 from R = 97."""
    vitcost.estimate("biformer_tiny", 97)
    with pytest.raises(SpecError, match="cannot hold 7x7 regions"):
        vitcost.estimate("biformer_tiny", 96)


@pytest.mark.parametrize(("argv", "message"), [
    (("compare", "-m", "biformer_tiny", "--res", "64"), "cannot hold 7x7 regions"),
    (("compare", "-m", "biformer_tiny", "--set", "topks=[1,4,64,0]"), "more than the 49 regions"),
    (("compare", "-m", "biformer_small", "--set", "n_win=0"), "n_win")])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_models_and_compare(capsys):
    code, out, err = run(capsys, "models")
    assert code == 0 and all(name in out for name in BIFORMER_PRESETS)
    assert set(BIFORMER_PRESETS) <= set(PRESETS)
    code, out, err = run(capsys, "compare", "-m", *BIFORMER_PRESETS, "--res", "224", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["model"] for r in rows] == list(BIFORMER_PRESETS)
    assert all(r["family"] == "biformer" and r["complexity"] == "O((HW)²·kC/S²)" for r in rows)
    assert rows[0]["tokens"] == 56 * 56
