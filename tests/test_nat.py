"""NAT / DiNAT neighbourhood attention: which keys a token attends to (by hand, and against a brute-force
restatement of NATTEN's rule), one block's MACs by hand, exact per-layer agreement with fvcore and
FlopCounterMode, parameters, memory against the live-tensor tracker, the published figures and the
NAT paper's Table 1 formula."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sympy

import vitcost
from vitcost.analytic.estimate import walk
from vitcost.analytic.memory import predict_memory
from vitcost.analytic.nat import lattice, natten_rpb_macs
from vitcost.analytic.registry import family_named
from vitcost.cli import main
from vitcost.errors import SpecError
from vitcost.specs import NATSpec
from vitcost.vocab import Kernel
from vitcost.zoo import PRESETS, get_preset

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from vitcost.measure.check import check_model  # noqa: E402
from vitcost.measure.memory import measure_forward_memory  # noqa: E402
from vitcost.nets import build  # noqa: E402
from vitcost.nets.nat import NeighborhoodAttention, neighbourhood_index  # noqa: E402

NAT_PRESETS = ("nat_mini", "nat_tiny", "nat_small", "nat_base", "dinat_tiny")
F32 = 4

# Small variants of the presets: heads 1 (q flattens to a view) and > 1, layer scale, dilations 4 and 2.
NAT_TINY = NATSpec(embed_dim=16, depths=(2, 1, 1), heads=(1, 2, 4), kernel=5, mlp_ratio=3.0, num_classes=10)
DINAT_TINY = NATSpec(embed_dim=16, depths=(2, 2, 1), heads=(2, 2, 4), kernel=3, dilations=(1, 4, 1, 2, 1),
                     mlp_ratio=2.0, layer_scale=1e-5, num_classes=10)
# One block of kernel 7, dilation 2: a 36x44 image gives a 9x11 grid (two stride-2 convs), a 60x68 one 15x17.
ONE_BLOCK = NATSpec(embed_dim=8, depths=(1,), heads=(2,), kernel=7, dilations=(2,), mlp_ratio=2.0, num_classes=10)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Which keys a token attends to


def brute_force_keys(i: int, length: int, kernel: int, dilation: int) -> tuple[list[int], list[int]]:
    """NATTEN's rule restated as a search: of the windows of `kernel` consecutive members of i's dilation
    group (positions = i mod d), take the one whose middle member is nearest to i (a window centred on
    i when there is room, shifted inward at the ends). Returns the key positions and the rows of the
    2k-1 bias table (key's group index - i's group index + k - 1)."""
    members = list(range(i % dilation, length, dilation))
    j = members.index(i)
    starts = range(len(members) - kernel + 1)
    start = min(starts, key=lambda s: abs(s + kernel // 2 - j))
    window = range(start, start + kernel)
    return [members[t] for t in window], [t - j + kernel - 1 for t in window]


def test_neighbours_of_a_9x11_grid_by_hand():
    """k = 7, dilation 2 on a 9 x 11 grid. Both axes are shorter than k*d = 14, so (as in NATTEN) the grid
    is zero-padded to 14 x 14. Each dilation group of a 14-long axis has 7 members (even positions, odd
    positions), so every window is its token's whole group: the border shift is maximal.
      corner (0, 0): rows 0, 2, .., 12 and columns 0, 2, .., 12; group index 0 of 7, so the bias rows and
                     columns are 0..6 - 0 + 6 = 6..12 (all keys on one side);
      centre (4, 5): row 4 is member 2 of the even rows -> rows 0, 2, .., 12, bias 0..6 - 2 + 6 = 4..10;
                     column 5 is member 2 of the odd columns -> columns 1, 3, .., 13, bias 4..10."""
    attn = NeighborhoodAttention(8, 2, 7, 2, (9, 11), "math")
    assert attn.padded == (14, 14)
    rows, bias_rows = neighbourhood_index(14, 7, 2)
    cols, bias_cols = neighbourhood_index(14, 7, 2)
    assert rows[0].tolist() == [0, 2, 4, 6, 8, 10, 12] and bias_rows[0].tolist() == list(range(6, 13))
    assert cols[0].tolist() == [0, 2, 4, 6, 8, 10, 12] and bias_cols[0].tolist() == list(range(6, 13))
    assert rows[4].tolist() == [0, 2, 4, 6, 8, 10, 12] and bias_rows[4].tolist() == list(range(4, 11))
    assert cols[5].tolist() == [1, 3, 5, 7, 9, 11, 13] and bias_cols[5].tolist() == list(range(4, 11))


def test_neighbours_of_a_15x17_grid_by_hand():
    """k = 7, dilation 2, no padding (15, 17 >= 14). Rows: even group 0..14 (8 members), odd 1..13 (7);
    columns: even 0..16 (9), odd 1..15 (8).
      corner (0, 0): first 7 even members -> rows = cols = 0, 2, .., 12, bias 6..12 (shifted inward);
      centre (7, 8): row 7 is member 3 of 7 odd rows -> window members 0..6 = rows 1, 3, .., 13, bias
                     3..9; column 8 is member 4 of 9 even columns -> members 1..7 = columns 2, .., 14,
                     bias 3..9 (centred: the bias is symmetric about k - 1 = 6 .. no shift);
      corner (14, 16): member 7 of 8 even rows -> members 1..7 = rows 2, .., 14, bias 0..6; member 8 of
                     9 even columns -> members 2..8 = columns 4, .., 16, bias 0..6."""
    rows, bias_rows = neighbourhood_index(15, 7, 2)
    cols, bias_cols = neighbourhood_index(17, 7, 2)
    assert rows[0].tolist() == list(range(0, 13, 2)) and bias_rows[0].tolist() == list(range(6, 13))
    assert rows[7].tolist() == list(range(1, 14, 2)) and bias_rows[7].tolist() == list(range(3, 10))
    assert cols[8].tolist() == list(range(2, 15, 2)) and bias_cols[8].tolist() == list(range(3, 10))
    assert rows[14].tolist() == list(range(2, 15, 2)) and bias_rows[14].tolist() == list(range(0, 7))
    assert cols[16].tolist() == list(range(4, 17, 2)) and bias_cols[16].tolist() == list(range(0, 7))


@pytest.mark.parametrize(("length", "kernel", "dilation"), [(14, 7, 2), (15, 7, 2), (17, 7, 2), (9, 3, 3),
                                                            (11, 5, 1), (56, 7, 8), (23, 5, 4)])
def test_neighbours_equal_the_brute_force_rule(length: int, kernel: int, dilation: int):
    keys, bias = neighbourhood_index(length, kernel, dilation)
    for i in range(length):
        expected_keys, expected_bias = brute_force_keys(i, length, kernel, dilation)
        assert keys[i].tolist() == expected_keys, i
        assert bias[i].tolist() == expected_bias, i


def loop_attention(attn: NeighborhoodAttention, x: torch.Tensor, dilation: int, tokens: list[tuple[int, int]]
                   ) -> dict[tuple[int, int], torch.Tensor]:
    """Explicit per-token, per-head attention (the output before proj) from the brute-force keys: pad x
    to k*d, q k / sqrt(d) + rpb[head, bias row, bias col] over the k x k keys, softmax, sum of v."""
    _, gh, gw, c = x.shape
    k, heads = attn.kernel, attn.heads
    d = c // heads
    hp, wp = max(gh, k * dilation), max(gw, k * dilation)
    xp = torch.zeros(1, hp, wp, c)
    xp[:, :gh, :gw] = x
    q, kk, v = attn.qkv(xp)[0].reshape(hp, wp, 3, heads, d).unbind(2)
    out = {}
    for i, j in tokens:
        rows, brows = brute_force_keys(i, hp, k, dilation)
        cols, bcols = brute_force_keys(j, wp, k, dilation)
        per_head = []
        for h in range(heads):
            scores = torch.stack([q[i, j, h] @ kk[r, s, h] / d**0.5 + attn.rpb[h, br, bs]
                                  for r, br in zip(rows, brows) for s, bs in zip(cols, bcols)])
            values = torch.stack([v[r, s, h] for r in rows for s in cols])
            per_head.append(scores.softmax(0) @ values)
        out[i, j] = torch.cat(per_head)
    return out


def _before_proj(attn: NeighborhoodAttention, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = attn.proj.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        attn(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize(("grid", "tokens"), [((9, 11), [(0, 0), (4, 5), (8, 10)]),
                                              ((15, 17), [(0, 0), (7, 8), (14, 16), (3, 12)])])
def test_attention_equals_an_explicit_loop(grid: tuple[int, int], tokens: list[tuple[int, int]]):
    torch.manual_seed(0)
    attn = NeighborhoodAttention(8, 2, 7, 2, grid, "math")
    with torch.no_grad():
        attn.rpb.normal_()  # a bias large enough to matter
    x = torch.randn(1, *grid, 8)
    with torch.no_grad():
        expected = loop_attention(attn, x, 2, tokens)
    for mode in ("math", "sdpa"):
        attn.attn_mode = mode
        y = _before_proj(attn, x)
        assert y.shape == (1, *grid, 8)
        for (i, j), ref in expected.items():
            torch.testing.assert_close(y[0, i, j], ref, rtol=1e-5, atol=1e-5)


def test_every_token_of_a_small_grid_equals_the_loop():
    torch.manual_seed(1)
    attn = NeighborhoodAttention(6, 3, 3, 3, (10, 7), "math")  # dilation 3, k*d = 9 > 7: columns padded
    with torch.no_grad():
        attn.rpb.normal_()
    x = torch.randn(1, 10, 7, 6)
    tokens = [(i, j) for i in range(10) for j in range(7)]
    with torch.no_grad():
        expected = loop_attention(attn, x, 3, tokens)
    y = _before_proj(attn, x)
    torch.testing.assert_close(torch.stack([y[0, i, j] for i, j in tokens]), torch.stack(list(expected.values())),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# MACs by hand, and exactly what fvcore and FlopCounterMode count


def one_block_macs(image: tuple[int, int], grid: tuple[int, int], padded: tuple[int, int]) -> int:
    """ONE_BLOCK (C = 8, 2 heads, k = 7, MLP 16, 10 classes) on `image`:
    tokenizer  conv 3 -> 4 (3x3, stride 2): (H/2)(W/2) * 4 * 3 * 9;  conv 4 -> 8 to the h x w grid: hw * 8 * 4 * 9
    qkv        on the padded hp x wp grid: hp wp * C * 3C
    attention  QK and AV over k^2 = 49 neighbours of every padded token: 2 * hp wp * 49 * C  (NAT Table 1)
    proj       on the h x w grid: hw * C^2;  MLP: 2 * hw * C * 16;  head: C * 10."""
    c, (h, w), (hp, wp) = 8, grid, padded
    half = (image[0] // 2) * (image[1] // 2)
    return (half * 4 * 3 * 9 + h * w * 8 * 4 * 9 + hp * wp * c * 3 * c + 2 * hp * wp * 49 * c + h * w * c * c
            + 2 * h * w * c * 16 + c * 10)


@pytest.mark.parametrize(("image", "grid", "padded"), [((36, 44), (9, 11), (14, 14)), ((60, 68), (15, 17), (15, 17))])
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_one_block_macs_by_hand(image, grid, padded, attn):
    est = vitcost.estimate(ONE_BLOCK, image)
    assert est.tokens == grid[0] * grid[1]
    expected = one_block_macs(image, grid, padded)
    assert est.macs == expected
    (call,) = [op.call for op in est.ops if op.call is not None]
    assert (call.batch, call.heads, call.nq, call.nkv, call.head_dim) == (padded[0] * padded[1], 2, 1, 49, 4)
    r = check_model(ONE_BLOCK, image, batch=1, attn=attn, convention="macs", method="real")
    assert r.status == "PASS", r.first_mismatch
    assert r.analytic == r.fvcore == r.torch == expected


CHECK_RUNS = [(spec, res, batch, attn) for spec in (NAT_TINY, DINAT_TINY) for res in (64, (50, 74), (36, 44))
              for batch, attn in ((1, "math"), (2, "sdpa"))] + [
    (NAT_TINY, (50, 74), 2, "math"), (DINAT_TINY, (36, 44), 1, "sdpa")]


@pytest.mark.parametrize(("spec", "res", "batch", "attn"), CHECK_RUNS)
def test_tiny_variants_check_exactly_per_layer(spec, res, batch, attn, passes_exactly):
    """Sizes that divide (64: grids 16, 8, 4), that do not (50x74: 13x19 -> 7x10 -> 4x5) and that pad
    (36x44: 9x11, below k*d for the dilation-4 block and, at 3x3, for kernel 5)."""
    r = passes_exactly(spec, res, batch=batch, attn=attn)
    assert r.analytic == r.fvcore == r.torch > 0


@pytest.mark.parametrize(("model", "attn"), [(m, "math") for m in NAT_PRESETS] + [("nat_mini", "sdpa"),
                                                                                   ("dinat_tiny", "sdpa")])
def test_presets_check_exactly_on_meta(model, attn):
    r = check_model(model, 224, batch=1, attn=attn, convention="fvcore", method="meta")
    assert r.method == "meta" and r.status == "PASS", r.first_mismatch
    assert r.layers and all(layer.ok(0) for layer in r.layers)


def test_dilation_changes_no_count():
    """DiNAT costs what NAT costs (DiNAT paper): dilation moves the neighbours, not their number, as long
    as no axis needs padding (at 224 every DiNAT stage has exactly k*d tokens a side: 56 = 7*8, 28 = 7*4,
    14 = 7*2)."""
    for res in (224, 448):
        nat, dinat = vitcost.estimate("nat_tiny", res), vitcost.estimate("dinat_tiny", res)
        assert nat.total == dinat.total
    # below 224 the dilation-8 blocks pad their 48x48 grid to 56x56: qkv and attention grow by 56^2/48^2
    assert vitcost.estimate("dinat_tiny", 192).macs > vitcost.estimate("nat_tiny", 192).macs


@pytest.mark.parametrize("model", ["nat_mini", "dinat_tiny"])
def test_macs_are_linear_in_the_token_count(model):
    """On the lattice (no padding, exact halvings) every op is a multiple of H*W but the head:
    M(R) = a R^2 + b, so M(2L) - M(L) = 3aL^2 and M(3L) - M(L) = 8aL^2."""
    step, _ = lattice(get_preset(model).spec)
    m1, m2, m3 = (vitcost.estimate(model, step * n).macs for n in (1, 2, 3))
    assert 8 * (m2 - m1) == 3 * (m3 - m1)


# ---------------------------------------------------------------------------------------------
# Parameters


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model", NAT_PRESETS)
def test_preset_params_equal_the_built_net(model):
    assert _numel(build(model, 224, device="meta")) == vitcost.estimate(model, 224).params


def test_params_by_hand_dinat_tiny_variant():
    """DINAT_TINY: C = 16, 32, 64; heads 2, 2, 4; k = 3 (a 5x5 bias table per head); MLP ratio 2; layer
    scale (2C per block); 10 classes. Independent of the resolution (no table grows with the grid)."""
    def block(c, heads):
        return (2 * c + (3 * c * c + 3 * c) + heads * 5 * 5 + (c * c + c) + 2 * c + (2 * c * c + 2 * c)
                + (2 * c * c + c) + 2 * c)

    tokenizer = (3 * 8 * 9 + 8) + (8 * 16 * 9 + 16) + 2 * 16
    downsample = (16 * 32 * 9 + 2 * 32) + (32 * 64 * 9 + 2 * 64)
    expected = tokenizer + 2 * block(16, 2) + 2 * block(32, 2) + block(64, 4) + downsample + 2 * 64 + 64 * 10 + 10
    for res in (64, 50):
        assert _numel(build(DINAT_TINY, res)) == vitcost.estimate(DINAT_TINY, res).params == expected


# ---------------------------------------------------------------------------------------------
# Published figures (tests/data/published.md, the NAT/DiNAT rows)

PUBLISHED_MD = Path(__file__).resolve().parent / "data" / "published.md"


def published_nat() -> dict[str, tuple[float, float]]:
    """{preset: (params M, GMACs)} from the NAT row (Mini/Tiny/Small/Base); DiNAT-Tiny is listed 'as NAT'."""
    for line in PUBLISHED_MD.read_text().splitlines():
        if line.startswith("| NAT-Mini / Tiny / Small / Base, 224"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            params = [float(x) for x in re.findall(r"([\d.]+)M", cells[2])]
            gmacs = [float(x) for x in cells[3].split("/")]
            out = dict(zip(("nat_mini", "nat_tiny", "nat_small", "nat_base"), zip(params, gmacs)))
            out["dinat_tiny"] = out["nat_tiny"]
            return out
    raise AssertionError("published.md has no NAT row")


def test_presets_match_published_params_and_macs():
    """fvcore convention within 0.5% of the published GMACs, and rounding to them; so does NATTEN's own
    count, which adds one per score element for the bias (`natten_rpb_macs`, 0.05-0.08%). The published
    parameter counts are whole millions (+-0.5M): NAT-Small's 50.74M is 0.50% under its "51M" because
    of that rounding; the others are within 0.5% too."""
    for name, (params_m, gmacs) in published_nat().items():
        est = vitcost.estimate(name, 224)
        assert get_preset(name).params_m == params_m and get_preset(name).gmacs == gmacs
        fvcore = est.count("fvcore")
        natten = fvcore + natten_rpb_macs(est.spec, 224, 224)
        for count in (fvcore, natten):
            assert abs(count / 1e9 - gmacs) / gmacs < 0.005, name
            assert round(count / 1e9, 1) == gmacs, name
        assert round(est.params / 1e6) == params_m, name
        if name != "nat_small":
            assert abs(est.params / 1e6 - params_m) / params_m < 0.005, name
    assert round(vitcost.estimate("nat_small", 224).params / 1e6, 2) == 50.74


# ---------------------------------------------------------------------------------------------
# Memory: predicted against the live-tensor tracker on CPU

MEMORY_CASES = [(NAT_TINY, 64, "math"), (NAT_TINY, 64, "sdpa"), (DINAT_TINY, (36, 44), "math"),
                (DINAT_TINY, (36, 44), "sdpa"), (DINAT_TINY, (50, 74), "math"), (ONE_BLOCK, (36, 44), "sdpa")]


@pytest.mark.parametrize(("spec", "res", "attn"), MEMORY_CASES)
def test_predicted_vs_measured_forward_memory(spec, res, attn):
    h, w = (res, res) if isinstance(res, int) else res
    net = build(spec, (h, w), attn=attn).eval()
    measured = measure_forward_memory(net, torch.randn(2, 3, h, w))
    pred = predict_memory(vitcost.estimate(spec, (h, w), 2), Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


def test_score_bytes_by_hand():
    """DINAT_TINY at 36x44, batch 2, math: B * heads * hp * wp * k^2 floats per layer, k = 3.
    Stage grids 9x11, 5x6, 3x3. Dilation 1 needs 3 a side (no padding); dilation 4 needs 12 (9x11 -> 12x12);
    dilation 2 needs 6 (5x6 -> 6x6)."""
    per_layer = [2 * 9 * 11, 2 * 12 * 12, 2 * 5 * 6, 2 * 6 * 6, 4 * 3 * 3]  # heads * hp * wp
    expected = [2 * n * 9 * F32 for n in per_layer]
    net = build(DINAT_TINY, (36, 44)).eval()
    measured = measure_forward_memory(net, torch.randn(2, 3, 36, 44))
    pred = predict_memory(vitcost.estimate(DINAT_TINY, (36, 44), 2))
    assert measured.score_bytes == pred.stored_score_bytes == sum(expected)
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes == max(expected)
    assert predict_memory(vitcost.estimate(DINAT_TINY, (36, 44), 2), Kernel.sdpa).stored_score_bytes == 0


# ---------------------------------------------------------------------------------------------
# Formula, complexity class, spec rules, command line


def test_local_attention_formula_is_nat_table1():
    expr = vitcost.formula("local_attention")
    s = {x.name: x for x in expr.free_symbols}
    assert set(s) == {"H", "W", "D", "K"}
    h, w, d, k = s["H"], s["W"], s["D"], s["K"]
    assert sympy.expand(expr - (3 * h * w * d**2 + 2 * h * w * d * k**2)) == 0


@pytest.mark.parametrize(("model", "res"), [("nat_small", 224), ("dinat_tiny", 448), ("nat_mini", 320)])
def test_local_attention_formula_at_numbers_equals_the_walker(model, res):
    """Every block's qkv + attention MACs equal the formula at its own grid, width and kernel (at these
    sizes no block pads)."""
    expr = vitcost.formula("local_attention")
    s = {x.name: x for x in expr.free_symbols}
    spec = get_preset(model).spec
    ops = walk(spec, res, res, 1)
    blocks = 0
    for stage, depth in enumerate(spec.depths):
        side = res // 4 // 2**stage
        for i in range(depth):
            p = f"levels.{stage}.blocks.{i}.attn"
            walked = sum(op.cost.macs for op in ops if op.path in (p, f"{p}.qkv"))
            at = {s["H"]: side, s["W"]: side, s["D"]: spec.stage_dim(stage), s["K"]: spec.kernel}
            assert walked == int(expr.subs(at)), p
            blocks += 1
    assert blocks == sum(spec.depths)


def test_complexity_class_and_exponent():
    fam = family_named("nat")
    assert fam.complexity(get_preset("nat_tiny").spec) == "O(HW·D·K²)"
    assert fam.exponent(get_preset("dinat_tiny").spec) == 2


@pytest.mark.parametrize(("overrides", "field"), [
    ({"kernel": 6}, "kernel"), ({"kernel": 1}, "kernel"), ({"dilations": (1, 2)}, "dilations"),
    ({"dilations": (1, 0, 1, 1)}, "dilations"), ({"heads": (3, 4)}, "divisible"), ({"depths": (1,)}, "depths"),
    ({"embed_dim": 15, "heads": (1, 1)}, "embed_dim"), ({"layer_scale": -1.0}, "layer_scale")])
def test_bad_specs_name_the_field(overrides, field):
    args = {"embed_dim": 16, "depths": (2, 2), "heads": (1, 2), **overrides}
    with pytest.raises(SpecError, match=field):
        NATSpec(**args)


def test_cli_models_formula_and_compare(capsys):
    code, out, err = run(capsys, "models")
    assert code == 0 and all(name in out for name in NAT_PRESETS)
    assert set(NAT_PRESETS) <= set(PRESETS)
    code, out, err = run(capsys, "formula", "local_attention")
    assert code == 0 and "NAT Table 1" in out and "K" in out
    code, out, err = run(capsys, "formula", "dinat_tiny")
    assert code == 0 and "LaTeX" in out
    code, out, err = run(capsys, "compare", "-m", "nat_mini", "dinat_tiny", "--res", "224", "512", "1024",
                         "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["model"], r["res"]) for r in rows] == [(m, r) for m in ("nat_mini", "dinat_tiny")
                                                      for r in (224, 512, 1024)]
    for m in ("nat_mini", "dinat_tiny"):
        r224, r512, r1024 = (r for r in rows if r["model"] == m)
        assert r224["tokens"] == 56 * 56 and r1024["tokens"] == 256 * 256
        assert r224["complexity"] == "O(HW·D·K²)"
        # linear in the tokens: 512 has 16384/3136 = 5.22x the tokens, 1024 4x the tokens of 512
        assert 5.1 < r512["macs"] / r224["macs"] < 5.3 and 3.9 < r1024["macs"] / r512["macs"] < 4.05
        assert r1024["attn_matrix_elems"] == 4 * r512["attn_matrix_elems"]
