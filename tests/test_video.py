"""Video inputs (TxHxW): the time axis parsed once at the edge, carried beside (H, W), refused by the families
without one; ViViT's tubelet ViT counted by hand, against fvcore and FlopCounterMode per layer, and its memory
against the live-tensor tracker."""

from __future__ import annotations

import json
import pickle

import pytest

from vitcost import estimate
from vitcost.cli import main
from vitcost.errors import SpecError
from vitcost.specs import ViTSpec
from vitcost.vocab import Kernel, Res, parse_res, parse_resolutions, res_label


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err

# a tiny tubelet ViT: 2-frame tubelets of 8x8 patches, two blocks
TINY = ViTSpec(dim=32, depth=2, heads=2, patch=8, tubelet=2, num_classes=10)


# --- the size type and its parser -----------------------------------------------------------------

def test_parse_clip_sizes():
    clip = parse_res("16x224x320")
    assert (clip.frames, tuple(clip)) == (16, (224, 320))
    h, w = clip  # goes wherever an (H, W) size goes
    assert (h, w) == (224, 320)
    assert parse_res((8, 112, 112)) == Res(112, 112, 8)
    assert res_label(clip) == "16x224x320" and res_label(parse_res("224x320")) == "224x320"
    # an image is the plain (H, W) tuple; a clip of one frame is not an image
    assert parse_res(224) == (224, 224) and hash(parse_res(224)) == hash((224, 224))
    assert parse_res("1x224x224") != (224, 224) and (224, 224) != parse_res("1x224x224")
    assert pickle.loads(pickle.dumps(clip)) == clip


def test_resolutions_sorted_by_pixels_then_frames():
    sizes = parse_resolutions(["8x224x224", "224", "1x224x224", "4x448x448", "8x224x224"])
    assert [res_label(s) for s in sizes] == [224, "1x224x224", "8x224x224", "4x448x448"]


@pytest.mark.parametrize("text", ["0x224x224", "2x224x", "1x2x3x4", "x224x224", "-2x8x8"])
def test_bad_clip_sizes_are_one_line(text):
    with pytest.raises(SpecError) as err:
        parse_res(text)
    assert "\n" not in str(err.value)


# --- analytic: the tubelet ViT by hand ------------------------------------------------------------

def test_tubelet_vit_by_hand():
    """ViT-B with 2x16x16 tubelets on 16x224x224 (VideoMAE's ViT-B): N = 8 * 14 * 14 = 1568 tokens (+1
    class token); per block 4ND^2 (qkv, proj) + 2N^2 D (scores, AV) + 2*4ND^2 (MLP); the embedding a Conv3d
    of 3*2*16*16 taps per output; head on the class token."""
    e = estimate("vit_b16:tubelet=2", "16x224x224")
    d, n = 768, 8 * 14 * 14 + 1
    block = 12 * n * d * d + 2 * n * n * d
    embed = 8 * 14 * 14 * d * 3 * 2 * 16 * 16
    assert e.macs == 12 * block + embed + d * 1000
    assert e.tokens == 8 * 14 * 14
    assert e.complexity == "O((T/t)^2 R^4/P^4)"
    # params: the Conv3d's weight and bias, one position row per token
    image = estimate("vit_b16", 224)
    assert e.params - image.params == 3 * 16 * 16 * d + (n - 197) * d


def test_clip_of_one_tubelet_costs_as_the_image():
    """A clip of T = tubelet frames is one frame's grid: the cost of the image with tubelet x the input taps."""
    assert estimate("vit_b16", "1x224x224").macs == estimate("vit_b16", 224).macs
    assert estimate("vit_b16", "1x224x224").complexity == "O((T/t)^2 R^4/P^4)"
    assert estimate("vit_b16", 224).complexity == "O(R^4/P^4)"


def test_time_axis_errors():
    with pytest.raises(SpecError, match="takes images"):
        estimate("swin_t", "16x224x224")
    with pytest.raises(SpecError, match="does not divide"):
        estimate("vit_b16:tubelet=2", "15x224x224")
    with pytest.raises(SpecError, match="does not divide"):
        estimate("vit_b16:tubelet=2", 224)
    with pytest.raises(SpecError, match="one frame's token grid"):
        estimate("vit_b16:class_tokens=0,window=7", "4x224x224")


@pytest.mark.parametrize("args", [("-m", "resnet50", "-r", "16x224x224"),
                                  ("-m", "vit_b16:tubelet=2", "-r", "15x224x224"),
                                  ("-m", "vit_b16", "-r", "16x224x224x3")])
def test_cli_time_axis_errors_exit_2(capsys, args):
    code, out, err = run(capsys, "compare", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err


def test_compare_json_reads_t(capsys):
    code, out, _ = run(capsys, "compare", "-m", "vit_b16:tubelet=2", "-r", "8x224x224", "16x224x224", "-f", "json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["res"], r["frames"], r["height"], r["width"]) for r in rows] == [
        ("8x224x224", 8, 224, 224), ("16x224x224", 16, 224, 224)]
    image = json.loads(run(capsys, "compare", "-m", "vit_b16", "-r", "224", "-f", "json")[1])[0]
    assert image["res"] == 224 and image["frames"] is None


def test_library_facade_takes_clips():
    import vitcost

    assert vitcost.estimate("vit_b16:tubelet=2", "16x224x224").res.frames == 16
    rows = vitcost.compare(["vit_b16:tubelet=2"], ["8x224x224"])
    assert rows["frames"].iloc[0] == 8 and rows["res"].iloc[0] == "8x224x224"


# --- against the counters and the tracker ---------------------------------------------------------

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("res", ["4x32x32", "2x40x40", "6x24x24"])  # 40: the patch grid floors
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_tubelet_vit_exact_against_both_counters(res, batch, attn):
    from vitcost.measure.check import check_model

    r = check_model(TINY, res, batch, attn=attn)
    assert r.status == "PASS", r.first_mismatch
    assert r.torch == r.analytic and r.fvcore == r.analytic
    assert (r.row()["res"], r.row()["frames"]) == (res, int(res.split("x")[0]))


@pytest.mark.parametrize("res", ["2x32x32", "4x48x48", "2x40x40"])  # 40: the 16-px patch grid floors
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_videomae_preset_exact_against_both_counters(res, batch, attn):
    """The preset's own layers (width 768, its pooling, fc_norm, no key bias), two of its blocks, on small
    clips: every layer equal in fvcore's and FlopCounterMode's counts."""
    from vitcost.measure.check import check_model

    r = check_model("videomae_b16:depth=2", res, batch, attn=attn)
    assert r.status == "PASS", r.first_mismatch


@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_tubelet_vit_memory_against_the_tracker(attn):
    from vitcost.analytic.memory import predict_memory
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build

    torch.set_num_threads(1)
    net = build(TINY, "4x48x48", attn=attn).eval()
    measured = measure_forward_memory(net, torch.randn(2, 3, 4, 48, 48))
    pred = predict_memory(estimate(TINY, "4x48x48", 2), Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at
    assert pred.input_bytes == 2 * 3 * 4 * 48 * 48 * 4


def test_profile_rows_read_t(capsys):
    code, out, _ = run(capsys, "profile", "--predict-only", "--hardware", "cpu", "-m", "videomae_b16", "-r",
                       "8x224x224", "-f", "json")
    assert code == 0
    row = json.loads(out)[0]
    assert (row["res"], row["frames"]) == ("8x224x224", 8)
    # the input is the clip: B * C * T * H * W elements of 4 bytes
    assert int(row["input_bytes"]) == 3 * 8 * 224 * 224 * 4


def _published(label: str) -> tuple[float, float]:
    """(params in millions, GMACs) of a row of published.md's "More designs" table."""
    from pathlib import Path

    for line in (Path(__file__).parent / "data" / "published.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == label:
            return float(cells[2].rstrip("M")), float(cells[3])
    raise AssertionError(label)


def test_videomae_preset_reproduces_the_paper():
    """VideoMAE's ViT-B on 16x224x224 clips: 87M params and 180 GFLOPs (MACs), to the paper's rounding."""
    params_m, gmacs = _published("VideoMAE ViT-B, 16x224x224")
    e = estimate("videomae_b16", "16x224x224")
    assert (round(e.params / 1e6), round(e.macs / 1e9)) == (params_m, gmacs)
    assert e.tokens == 1568 and e.res.frames == 16


def test_formula_has_the_time_axis():
    """`vitcost formula` of a clip preset is in T, H and W: its quadratic term is the scores' 2 N^2 D per block
    with N = (T/2)(H/16)(W/16) tokens: 12 * 2 * 768 / (2 * 16 * 16)^2 = 9/128 of (T H W)^2."""
    import sympy

    from vitcost.analytic.symbolic import formula, leading
    from vitcost.design import parse_design

    t, h, w = sympy.symbols("T H W", positive=True, integer=True)
    expr = leading(formula(parse_design("videomae_b16")))
    assert sympy.Poly(expr, t, h, w).coeff_monomial(t**2 * h**2 * w**2) == sympy.Rational(9, 128)
    assert "T" not in str(formula(parse_design("vit_b16")))  # an image preset stays in H, W


def test_report_plots_against_t_at_a_fixed_size():
    from vitcost.analytic.scaling import report_axis
    from vitcost.report.facts import scaling_facts
    from vitcost.report.rows import compare_estimates
    from vitcost.vocab import Dtype

    sizes = parse_resolutions(["4x224x224", "8x224x224", "16x224x224"])
    assert report_axis(sizes) == "frames"
    assert report_axis(parse_resolutions(["16x224x224", "16x448x448"])) == "side"
    assert report_axis(parse_resolutions([224, 448])) == "side"
    from vitcost.design import parse_design

    ests = compare_estimates([parse_design("videomae_b16")], sizes)
    facts = scaling_facts({"videomae_b16": ests}, [], "macs", 1, Dtype.fp32)
    assert facts.axis == "frames" and [p.x for p in facts.designs[0].points] == [4.0, 8.0, 16.0]
    # tokens grow as T, the scores as T^2: the fitted slope of cost on T lies between 1 and 2
    assert 1 < facts.designs[0].fit_slope < 2


@pytest.mark.parametrize("model,step", [("videomae_b16", 2), ("mvit_b_16x4", 2), ("vit_b16", 1)])
def test_cost_grows_with_t_at_a_fixed_size(model, step):
    """More frames, more tokens: MACs, attention scores and the activation peak all grow with T; the
    attention scores at least as fast as T (each query meets the keys of every frame)."""
    ests = [estimate(model, f"{t}x112x112") for t in (step, 2 * step, 4 * step, 8 * step)]
    for a, b in zip(ests, ests[1:]):
        assert b.macs > a.macs and b.activation_peak_bytes > a.activation_peak_bytes
        assert b.attn_matrix_elems >= 2 * a.attn_matrix_elems


def test_sweep_size_axis_takes_clips(capsys):
    code, out, _ = run(capsys, "sweep", "videomae_b16", "--vary", "depth=6,12", "-r", "8x112x112", "16x112x112",
                       "-f", "json")
    assert code == 0
    rows = json.loads(out)["rows"]
    assert sorted((r["res"], r["frames"]) for r in rows) == [("16x112x112", 16)] * 2 + [("8x112x112", 8)] * 2
