"""ViT-side designs: the SAM / ViTDet image encoder (decomposed relative positions, neck, no head).

Expected numbers are derived by hand below (the formula in a comment), taken from timm's benchmark CSV
(fvcore convention) or counted by fvcore and FlopCounterMode through `check_model`; none is copied from
vitcost's own output."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from vitcost import estimate
from vitcost.analytic.memory import predict_memory
from vitcost.analytic.registry import resolution_exponent
from vitcost.cli import main
from vitcost.errors import SpecError
from vitcost.specs import ViTSpec
from vitcost.vocab import Kernel
from vitcost.zoo import get_preset

F32 = 4
LN_FVCORE = 5  # fvcore counts an affine LayerNorm as 5 per element


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# ---------------------------------------------------------------------------------------------
# 1. SAM / ViTDet image encoder
#
# SAM-B (Kirillov et al. 2023) at 1024 px: a 64 x 64 grid of N = 4096 tokens of width D = 768, 12 heads of
# d = 64, 12 blocks; blocks 2, 5, 8, 11 global, the others in 14 x 14 windows of the grid zero-padded to
# 70 x 70 (5 x 5 = 25 windows of 196 tokens). Every block adds decomposed relative positions; a neck
# (1x1 conv 768 -> 256, LN2d, 3x3 conv 256 -> 256, LN2d) replaces the final norm; there is no head.

G, D, HEADS, HD, DEPTH, M, NECK = 64, 768, 12, 64, 12, 14, 256
N = G * G
GP = 70  # 64 rounded up to a multiple of 14
WINDOWS = (GP // M) ** 2  # 25
WT = M * M  # 196 tokens per window
GLOBAL = (2, 5, 8, 11)


def sam_b_scores(batch: int) -> int:
    """Attention-score elements: global blocks B*h*N^2 each, window blocks B*25*h*196^2 each."""
    return len(GLOBAL) * batch * HEADS * N * N + (DEPTH - len(GLOBAL)) * batch * WINDOWS * HEADS * WT * WT


def sam_b_macs(batch: int) -> int:
    embed = N * 3 * 16 * 16 * D  # stride-16 conv, 3 -> 768
    mlp = 2 * N * D * 4 * D  # fc1 + fc2 on the unpadded grid
    glob = (4 * N * D * D  # qkv (3ND^2) + proj (ND^2)
            + 2 * N * N * D  # q k^T and scores @ v: 2 N^2 d per head
            + N * (G + G) * D)  # rel-pos: q against a G-row table along h and along w, per head N*G*d each
    win = (4 * GP * GP * D * D  # qkv + proj on the padded grid
           + 2 * WINDOWS * WT * WT * D  # scores within each window
           + GP * GP * (M + M) * D)  # rel-pos within each window: 196 queries x (14 + 14) rows x d per head
    neck = N * D * NECK + N * NECK * NECK * 9
    return batch * (embed + len(GLOBAL) * (glob + mlp) + (DEPTH - len(GLOBAL)) * (win + mlp) + neck)


def sam_b_norm_elements(batch: int) -> int:
    return batch * (2 * DEPTH * N * D + 2 * N * NECK)  # norm1, norm2 per block; two LayerNorm2d in the neck


def sam_b_params() -> int:
    ln = 2 * D
    block = 2 * ln + (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D)
    rel_global = 2 * (2 * G - 1) * HD  # rel_pos_h, rel_pos_w: 127 rows of 64
    rel_window = 2 * (2 * M - 1) * HD  # 27 rows of 64
    embed = 3 * 16 * 16 * D + D + N * D  # conv weight + bias, position embedding of the 64 x 64 grid
    neck = D * NECK + 2 * NECK + NECK * NECK * 9 + 2 * NECK
    return (embed + DEPTH * block + len(GLOBAL) * rel_global + (DEPTH - len(GLOBAL)) * rel_window + neck)


def test_the_hand_derivation_gives_timms_sam_b() -> None:
    """timm's benchmark CSV lists samvit_base_patch16 at 1024 as 89.67M params and 486.43 GMACs (fvcore)."""
    assert round(sam_b_params() / 1e6, 2) == 89.67
    assert round((sam_b_macs(1) + LN_FVCORE * sam_b_norm_elements(1)) / 1e9, 2) == 486.43


@pytest.mark.parametrize("batch", [1, 2])
def test_sam_b_scores_padding_and_cost_against_the_hand_derivation(batch: int) -> None:
    e = estimate("sam_vit_b", 1024, batch)
    assert e.params == sam_b_params()
    assert e.macs == sam_b_macs(batch)
    assert e.count("fvcore") == sam_b_macs(batch) + LN_FVCORE * sam_b_norm_elements(batch)
    # the score matrices: 4 global blocks of B x 12 x 4096 x 4096, 8 window blocks of B x 25 x 12 x 196 x 196
    assert e.attn_matrix_elems == sam_b_scores(batch)
    assert e.attn_matrix_bytes == F32 * sam_b_scores(batch)
    assert e.attn_matrix_peak_bytes == F32 * batch * HEADS * N * N
    mem = predict_memory(e, Kernel.math)
    assert mem.stored_score_bytes == F32 * sam_b_scores(batch)
    assert mem.stored_score_peak_bytes == F32 * batch * HEADS * N * N
    assert predict_memory(e, Kernel.sdpa).stored_score_bytes == 0
    layers = e.by_layer("macs")
    # a window block's qkv runs on the 70 x 70 padded grid, a global block's on the 64 x 64 one
    assert layers["blocks.0.attn.qkv"] == batch * GP * GP * D * 3 * D
    assert layers["blocks.2.attn.qkv"] == batch * N * D * 3 * D
    assert layers["blocks.0.attn"] == batch * (2 * WINDOWS * WT * WT * D + GP * GP * 2 * M * D)
    assert layers["blocks.2.attn"] == batch * (2 * N * N * D + N * 2 * G * D)
    assert layers["blocks.0.mlp.fc1"] == batch * N * D * 4 * D  # the MLP on the unpadded grid


def test_sam_presets_and_aliases() -> None:
    for name, alias, dim, depth, heads, glob in [("sam_vit_b", "samvit_base_patch16", 768, 12, 12, (2, 5, 8, 11)),
                                                 ("sam_vit_l", "samvit_large_patch16", 1024, 24, 16, (5, 11, 17, 23)),
                                                 ("sam_vit_h", "samvit_huge_patch16", 1280, 32, 16, (7, 15, 23, 31))]:
        p = get_preset(alias)
        assert p.name == name and p.res == 1024
        s = p.spec
        assert (s.dim, s.depth, s.heads, s.patch, s.window, s.global_blocks) == (dim, depth, heads, 16, 14, glob)
        assert s.rel_pos and s.neck == 256 and s.num_classes == 0 and s.class_tokens == 0


@pytest.mark.parametrize("model", ["sam_vit_b", "sam_vit_l", "sam_vit_h"])
def test_sam_presets_within_half_a_percent_of_timm(model: str) -> None:
    p = get_preset(model)
    e = estimate(model, p.res)
    assert e.params / 1e6 == pytest.approx(p.params_m, rel=0.005)
    assert e.count("fvcore") / 1e9 == pytest.approx(p.gmacs, rel=0.005)


def test_complexity_of_windows_with_global_blocks() -> None:
    """Window blocks grow as HW, global blocks as (HW)^2: the class says both, the exponent is the larger."""
    sam = get_preset("sam_vit_b").spec
    assert estimate(sam, 1024).complexity == "O(HWC) + O((HW)^2 C)"
    assert estimate(sam, 1024).exponent == 4
    assert estimate(replace(sam, global_blocks=()), 1024).exponent == 2  # windows only: linear in the tokens
    assert estimate(replace(sam, window=0, global_blocks=()), 1024).exponent == 4


@pytest.mark.parametrize(("text", "power"), [("O(HWC) + O((HW)^2 C)", 4), ("O((HW)^2 C) + O(HWC)", 4),
                                             ("O(HWC) + O(N)", 2), ("O(R^4/P^4)", 4), ("O(R^4/P^4) + O(HW)", 4),
                                             ("O(HW/M^2 + R)", 2), ("O(HWC)", 2), ("O(N·d²)", 2)])
def test_resolution_exponent_takes_the_largest_term_of_a_sum(text: str, power: int) -> None:
    assert resolution_exponent(text) == power


def test_rel_pos_and_neck_need_a_token_grid() -> None:
    with pytest.raises(SpecError, match="class_tokens = 0"):
        ViTSpec(dim=64, depth=2, heads=2, rel_pos=True)
    with pytest.raises(SpecError, match="class_tokens = 0"):
        ViTSpec(dim=64, depth=2, heads=2, neck=32)
    with pytest.raises(SpecError, match="0 or more"):
        ViTSpec(dim=64, depth=2, heads=2, class_tokens=0, neck=-1)


def test_sam_cli_formula_models_compare(capsys) -> None:
    code, out, _ = run(capsys, "formula", "sam_vit_b", "--latex")
    assert code == 0 and "ceil" in out and "floor" in out  # windows pad the grid: ceilings of floors
    code, out, _ = run(capsys, "models", "--format", "json")
    assert code == 0 and {"sam_vit_b", "sam_vit_l", "sam_vit_h"} <= {r["model"] for r in json.loads(out)}
    code, out, _ = run(capsys, "compare", "-m", "sam_vit_b", "vit_b16", "--res", "224", "512", "1024",
                       "--format", "json")
    rows = {(r["model"], r["res"]): r for r in json.loads(out)}
    assert code == 0 and len(rows) == 6
    # at 224 the 14 x 14 grid is one window: SAM-B's scores equal ViT-B's without the class token
    assert rows["sam_vit_b", 224]["attn_matrix_elems"] == 12 * 12 * 196 * 196
    # at 1024 SAM-B materialises 4 global + 8 windowed blocks of scores, ViT-B 12 global blocks of 4097 tokens
    assert rows["sam_vit_b", 1024]["attn_matrix_elems"] == sam_b_scores(1)
    assert rows["vit_b16", 1024]["attn_matrix_elems"] == 12 * 12 * 4097 * 4097


# --- against fvcore and FlopCounterMode, and the live-tensor tracker -----------------------------------------

# A tiny SAM: grid 6 (48 px, divides the window 3), 8 (64 px, padded to 9) and 9 (72 px); block 1 global.
TINY_SAM = ViTSpec(dim=32, depth=3, heads=2, patch=8, class_tokens=0, window=3, global_blocks=(1,), rel_pos=True,
                   neck=16, num_classes=0)


# every size on both attention paths and with batch 1 and 2 (each pair once, to keep the file fast)
PAIRS = [(48, 1, "math"), (48, 2, "sdpa"), (64, 1, "sdpa"), (64, 2, "math"), (72, 1, "math"), (72, 2, "sdpa")]


@pytest.mark.parametrize(("res", "batch", "attn"), PAIRS)
def test_tiny_sam_checks_exactly(res: int, batch: int, attn: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model

    r = check_model(TINY_SAM, res, batch=batch, attn=attn, convention="fvcore", method="real")
    assert r.status == "PASS", r.first_mismatch
    assert r.counts.fvcore_via == "jit"
    assert r.analytic == r.fvcore == r.torch > 0
    paths = {layer.path for layer in r.layers}
    assert {"blocks.0.attn", "blocks.1.attn", "neck.0", "neck.1", "neck.2", "neck.3"} <= paths
    assert "norm" not in paths and "head" not in paths


def test_tiny_sam_with_a_head_checks_exactly() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model

    r = check_model(replace(TINY_SAM, num_classes=5), 64, batch=2, attn="math", convention="macs", method="real")
    assert r.status == "PASS", r.first_mismatch
    assert dict((layer.path, layer.fvcore) for layer in r.layers)["head"] == 2 * 16 * 5  # on the neck's mean


@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_sam_b_checks_exactly_on_meta(attn: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model

    r = check_model("sam_vit_b", 1024, batch=1, attn=attn, convention="macs", method="meta")
    assert r.status == "PASS", r.first_mismatch
    assert r.analytic == r.fvcore == r.torch == sam_b_macs(1)


@pytest.mark.parametrize("model", ["sam_vit_b", "sam_vit_l", "sam_vit_h"])
def test_sam_params_equal_the_built_net(model: str) -> None:
    pytest.importorskip("torch")
    from vitcost.nets import build

    net = build(model, 1024, device="meta")
    assert sum(p.numel() for p in net.parameters()) == estimate(model, 1024).params
    names = dict(net.named_parameters())
    assert {"blocks.0.attn.rel_pos_h", "neck.0.weight", "neck.1.weight", "neck.3.bias", "pos_embed"} <= set(names)
    glob = get_preset(model).spec.global_blocks[0]
    assert names[f"blocks.{glob}.attn.rel_pos_h"].shape[0] == 2 * 64 - 1  # the 64 x 64 grid at 1024
    assert names["blocks.0.attn.rel_pos_w"].shape[0] == 2 * 14 - 1  # the window


@pytest.mark.parametrize("attn", ["math", "sdpa"])
@pytest.mark.parametrize("res", [64, 72])
def test_tiny_sam_memory(res: int, attn: str) -> None:
    torch = pytest.importorskip("torch")
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = build(TINY_SAM, res, attn=attn).eval()
        measured = measure_forward_memory(net, torch.randn(2, 3, res, res))
    finally:
        torch.set_num_threads(before)
    pred = predict_memory(estimate(TINY_SAM, res, 2), Kernel(attn))
    g = res // 8
    # scores: the global block's 2 x 2 heads x g^2 x g^2, and 2 window blocks of 2 x (padded/3)^2 windows x 2 heads
    windows = ((g + 2) // 3) ** 2  # the grid rounded up to a multiple of 3, in 3 x 3 windows
    hand = 2 * 2 * g**4 + 2 * (2 * windows * 2 * 9 * 9)
    assert pred.stored_score_bytes == (F32 * hand if attn == "math" else 0)
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.score_peak_bytes == pred.stored_score_peak_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


# ---------------------------------------------------------------------------------------------
# 2. DeiT with distillation (Touvron et al. 2021): N = g^2 + 2 tokens (class and distillation), two heads.


def deit_distilled(dim: int, heads: int, *, res: int = 224, batch: int = 1, depth: int = 12, patch: int = 16,
                   classes: int = 1000) -> tuple[int, int, int]:
    """(params, MACs, LayerNorm elements) by hand: ViT with two prefix tokens and a second head."""
    g = res // patch
    n = g * g + 2
    hidden = 4 * dim
    params = (3 * patch * patch * dim + dim  # patch embedding conv
              + 2 * dim + n * dim  # cls_token, dist_token, one position row per token
              + depth * (4 * dim + 3 * dim * dim + 3 * dim + dim * dim + dim + 2 * dim * hidden + hidden + dim)
              + 2 * dim  # final norm
              + 2 * (dim * classes + classes))  # head and head_dist
    macs = batch * (g * g * 3 * patch * patch * dim
                    + depth * (4 * n * dim * dim + 2 * n * n * dim + 2 * n * dim * hidden)
                    + 2 * dim * classes)  # head on token 0, head_dist on token 1
    norms = batch * (2 * depth + 1) * n * dim
    return params, macs, norms


def test_deit_distilled_hand_derivation_against_timm_and_the_paper() -> None:
    """Exact counts (timm's benchmark CSV, fvcore): 22.44M / 4.63G and 87.34M / 17.68G; the DeiT paper
    rounds them to 22M / 4.6G and 87M / 17.6G (the last digit of DeiT-B's GMACs is not the rounding of 17.68,
    but within 0.5% of it)."""
    for dim, heads, timm, paper in [(384, 6, (22.44, 4.63), (22, 4.6)), (768, 12, (87.34, 17.68), (87, 17.6))]:
        params, macs, norms = deit_distilled(dim, heads)
        gmacs = (macs + LN_FVCORE * norms) / 1e9
        assert (round(params / 1e6, 2), round(gmacs, 2)) == timm
        assert round(params / 1e6) == paper[0] and gmacs == pytest.approx(paper[1], rel=0.008)


@pytest.mark.parametrize(("model", "dim", "heads"), [("deit_small_distilled_patch16_224", 384, 6),
                                                     ("deit_base_distilled_patch16_224", 768, 12)])
def test_deit_distilled_presets(model: str, dim: int, heads: int) -> None:
    p = get_preset(model)
    assert p.name == {384: "deit_s16_distilled", 768: "deit_b16_distilled"}[dim]
    assert (p.params_m, p.gmacs) == {384: (22.0, 4.6), 768: (87.0, 17.6)}[dim]  # the paper's figures
    params, macs, norms = deit_distilled(dim, heads)
    e = estimate(model, 224)
    assert e.params == params and e.macs == macs and e.count("fvcore") == macs + LN_FVCORE * norms
    # the gap to the paper: its rounding (ViTSpec's docstring); DeiT-B within 0.5%, DeiT-S 2.0% / 0.7%
    gap_params, gap_gmacs = e.params / 1e6 / p.params_m - 1, e.count("fvcore") / 1e9 / p.gmacs - 1
    if dim == 768:
        assert abs(gap_params) < 0.005 and abs(gap_gmacs) < 0.005
    else:
        assert round(gap_params, 3) == 0.020 and round(gap_gmacs, 3) == 0.007
        assert round(e.params / 1e6) == 22 and round(e.count("fvcore") / 1e9, 1) == 4.6


def test_distilled_needs_two_class_tokens_and_a_head() -> None:
    with pytest.raises(SpecError, match="class_tokens = 2"):
        ViTSpec(dim=64, depth=2, heads=2, distilled=True)
    with pytest.raises(SpecError, match="num_classes > 0"):
        ViTSpec(dim=64, depth=2, heads=2, class_tokens=2, distilled=True, num_classes=0)


TINY_DEIT = ViTSpec(dim=32, depth=2, heads=2, patch=8, class_tokens=2, distilled=True, num_classes=10)


@pytest.mark.parametrize(("res", "batch", "attn"), [(32, 1, "math"), (32, 2, "sdpa"), (44, 1, "sdpa"),
                                                    (44, 2, "math"), (64, 2, "sdpa")])
def test_tiny_deit_distilled_checks_exactly(res: int, batch: int, attn: str) -> None:
    """44 px leaves 4 pixels the stride-8 patches drop (a 5 x 5 grid)."""
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model

    r = check_model(TINY_DEIT, res, batch=batch, attn=attn, convention="macs", method="real")
    assert r.status == "PASS", r.first_mismatch
    _, macs, _ = deit_distilled(32, 2, res=res, batch=batch, depth=2, patch=8, classes=10)
    assert r.analytic == r.fvcore == r.torch == macs
    assert {layer.path: layer.torch for layer in r.layers}["head_dist"] == batch * 32 * 10


@pytest.mark.parametrize("model", ["deit_s16_distilled", "deit_b16_distilled"])
def test_deit_distilled_meta_check_and_params(model: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model
    from vitcost.nets import build

    for attn in ("math", "sdpa"):
        r = check_model(model, 224, batch=2, attn=attn, convention="fvcore", method="meta")
        assert r.status == "PASS", r.first_mismatch
    net = build(model, 224, device="meta")
    names = dict(net.named_parameters())
    assert sum(p.numel() for p in names.values()) == estimate(model, 224).params
    assert names["cls_token"].shape == names["dist_token"].shape == (1, 1, get_preset(model).spec.dim)
    assert {"head.weight", "head_dist.weight", "pos_embed"} <= set(names)


def test_distilled_output_is_the_mean_of_the_two_heads() -> None:
    torch = pytest.importorskip("torch")
    from vitcost.nets import build

    net = build(TINY_DEIT, 32).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = {}
    net.norm.register_forward_hook(lambda m, i, o: feats.setdefault("x", o))
    with torch.no_grad():
        out = net(x)
        tokens = feats["x"]
        expected = (net.head(tokens[:, 0]) + net.head_dist(tokens[:, 1])) / 2
    assert out.shape == (2, 10) and torch.allclose(out, expected)


@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_tiny_deit_distilled_memory(attn: str) -> None:
    torch = pytest.importorskip("torch")
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build

    spec, res, batch = TINY_DEIT, 48, 2
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured = measure_forward_memory(build(spec, res, attn=attn).eval(), torch.randn(batch, 3, res, res))
    finally:
        torch.set_num_threads(before)
    pred = predict_memory(estimate(spec, res, batch), Kernel(attn))
    n = 6 * 6 + 2  # tokens
    assert pred.stored_score_bytes == (F32 * 2 * batch * 2 * n * n if attn == "math" else 0)  # 2 blocks, 2 heads
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


# ---------------------------------------------------------------------------------------------
# 3. Linear attention (Katharopoulos et al. 2020): out = phi(Q) (phi(K)^T V) / (phi(Q) . sum_n phi(K_n)),
# phi = elu + 1. Per head over N tokens of width d:
#   phi(K)^T V   N d^2 MACs   -> a [d, d] state
#   phi(Q) @ it  N d^2 MACs
#   phi(Q) . sum phi(K)   N d MACs
#   elementwise: elu + 1 on q and k (2 each per element), the key sum (1 per key element), + eps per row,
#   the division (1 per output element): 6 N d + N; no N x N matrix.

TINY_LINEAR = ViTSpec(dim=32, depth=1, heads=2, patch=8, attention="linear", num_classes=10)


def linear_attention_by_hand(batch: int, heads: int, n: int, d: int) -> tuple[int, int]:
    """(MACs, elementwise ops) of one linear-attention call over `batch` sequences."""
    macs = batch * heads * (n * d * d + n * d * d + n * d)
    eltwise = batch * heads * (6 * n * d + n)
    return macs, eltwise


def test_a_linear_attention_block_by_hand() -> None:
    from vitcost.analytic.cost import Cost
    from vitcost.analytic.trace import Trace, linear_attention_steps

    # 64 px, patch 8: 8 x 8 patches + a class token = 65 tokens of width 32, 2 heads of 16
    e = estimate(TINY_LINEAR, 64, 2)
    macs, eltwise = linear_attention_by_hand(2, 2, 65, 16)
    assert macs == 2 * 2 * 65 * 16 * 33  # B*h*N*d*(2d + 1)
    assert e.layer_costs()["blocks.0.attn"] == Cost(macs=macs, eltwise=eltwise)  # no softmax, no scores
    assert e.attn_matrix_elems == 0
    op = next(op for op in e.ops if op.path == "blocks.0.attn")
    assert op.kind == "linear_attention" and op.out == 2 * 65 * 32 and op.inp == 3 * 2 * 65 * 32
    assert (op.call.state, op.call.k_sum) == (2 * 2 * 16 * 16, 2 * 2 * 16)
    # the record's closed form is the sum of its steps, also on symbols
    sympy = pytest.importorskip("sympy")
    b, n = sympy.symbols("B N", positive=True, integer=True)
    t = Trace(b)
    t.linear_attention("attn", b, 3, n, 8)
    steps = linear_attention_steps(t.ops[0].call)
    assert sympy.expand(sum(st.cost.macs for st in steps) - t.ops[0].cost.macs) == 0
    assert sympy.expand(sum(st.cost.eltwise for st in steps) - t.ops[0].cost.eltwise) == 0
    assert sympy.expand(t.ops[0].cost.macs - 3 * b * n * 8 * 17) == 0


def test_windowed_linear_attention_by_hand() -> None:
    """Linear attention inside windows: 72 px, patch 8 -> a 9 x 9 grid padded to 12 x 12 for windows of 4:
    9 windows of 16 tokens per image."""
    spec = ViTSpec(dim=32, depth=2, heads=2, patch=8, class_tokens=0, window=4, global_blocks=(1,),
                   attention="linear", num_classes=10)
    layers = estimate(spec, 72, 2).by_layer("macs")
    assert layers["blocks.0.attn"] == linear_attention_by_hand(2 * 9, 2, 16, 16)[0]
    assert layers["blocks.1.attn"] == linear_attention_by_hand(2, 2, 81, 16)[0]  # the global block
    assert layers["blocks.0.attn.qkv"] == 2 * 144 * 32 * 96  # on the padded grid


LINEAR_PAIRS = [(64, 1, "math"), (64, 2, "sdpa"), (68, 1, "sdpa"), (68, 2, "math"), (96, 2, "sdpa")]


@pytest.mark.parametrize(("res", "batch", "attn"), LINEAR_PAIRS)
def test_tiny_linear_attention_checks_exactly(res: int, batch: int, attn: str) -> None:
    """68 px leaves 4 pixels the stride-8 patches drop. fvcore counts the three matmuls (prod(A) * B's last
    dim each), FlopCounterMode the bmm they become (2 per MAC); neither counts elu, the key sum, the adds
    or the division, which the walker keeps as elementwise ops (outside both conventions)."""
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model

    r = check_model(TINY_LINEAR, res, batch=batch, attn=attn, convention="macs", method="real")
    assert r.status == "PASS", r.first_mismatch
    g = res // 8
    attn_layer = {layer.path: layer for layer in r.layers}["blocks.0.attn"]
    assert attn_layer.fvcore == attn_layer.torch == linear_attention_by_hand(batch, 2, g * g + 1, 16)[0]
    assert "aten::elu" in r.counts.unsupported_by_backend["fvcore"]
    assert not r.counts.unsupported_by_backend["torch"]  # no compute op without a formula


def test_windowed_linear_attention_checks_exactly() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model

    spec = ViTSpec(dim=32, depth=2, heads=2, patch=8, class_tokens=0, window=4, global_blocks=(1,),
                   attention="linear", num_classes=10)
    for attn, convention in (("math", "fvcore"), ("sdpa", "torch")):
        r = check_model(spec, 72, batch=2, attn=attn, convention=convention, method="real")
        assert r.status == "PASS", r.first_mismatch


@pytest.mark.parametrize("attn", ["math", "sdpa"])
@pytest.mark.parametrize("windowed", [False, True])
def test_linear_attention_memory(windowed: bool, attn: str) -> None:
    torch = pytest.importorskip("torch")
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build

    spec = TINY_LINEAR if not windowed else ViTSpec(dim=32, depth=2, heads=2, patch=8, class_tokens=0, window=4,
                                                    global_blocks=(1,), attention="linear", num_classes=10)
    res = 72
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured = measure_forward_memory(build(spec, res, attn=attn).eval(), torch.randn(2, 3, res, res))
    finally:
        torch.set_num_threads(before)
    pred = predict_memory(estimate(spec, res, 2), Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes == 0  # no softmax anywhere
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


def test_vit_b16_linear_at_1024_has_no_scores_and_a_smaller_peak() -> None:
    """ViT-B/16 at 1024 px, batch 1, fp32: N = 64^2 + 1 = 4097 tokens of D = 768, h = 12 heads.

    Both hold the embedded tokens (ND) from block 1 on: the nn.Sequential of blocks keeps its input.
    Softmax attention peaks at the softmax: the block input x, norm1(x), qkv (3ND), the scaled queries (ND) and
    the raw scores with their softmax (2 h N^2) are alive together: 7ND + 2hN^2 elements with the embedding.
    Linear attention has no N x N tensor; its peak is the MLP's GELU: the block input, x + attn, norm2's
    output (ND each), fc1's output and GELU's (4ND each): 12ND elements with the embedding. Its attention
    core holds at most x, norm1(x), qkv, phi(q), the numerator, the output (8ND) and the [d, d] state: less."""
    n, d, h = 4097, 768, 12
    softmax_peak = F32 * (7 * n * d + 2 * h * n * n)
    linear_peak = F32 * 12 * n * d
    lin, soft = estimate("vit_b16_linear", 1024), estimate("vit_b16", 1024)
    assert lin.attn_matrix_bytes == 0 and predict_memory(lin, Kernel.math).stored_score_bytes == 0
    assert soft.attn_matrix_bytes == F32 * 12 * h * n * n
    assert soft.activation_peak_bytes == softmax_peak
    assert lin.activation_peak_bytes == linear_peak
    assert soft.activation_peak_bytes / lin.activation_peak_bytes == pytest.approx(softmax_peak / linear_peak)
    assert round(softmax_peak / linear_peak, 2) == 11.25


def test_linear_attention_complexity_and_cli(capsys, tmp_path) -> None:
    assert estimate("vit_b16_linear", 224).complexity == "O(HW·C·d)"
    assert estimate("vit_b16_linear", 224).exponent == 2
    code, out, _ = run(capsys, "formula", "vit_b16_linear", "--latex")
    assert code == 0 and "^{2}" not in out  # linear in the number of tokens: no squared grid side
    code, out, _ = run(capsys, "models", "--format", "json")
    assert code == 0 and "vit_b16_linear" in {r["model"] for r in json.loads(out)}
    code, out, _ = run(capsys, "compare", "-m", "vit_b16_linear", "--res", "224", "512", "1024", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [r["res"] for r in rows] == [224, 512, 1024]
    assert all(r["attn_matrix_elems"] == 0 for r in rows)
    # the spec file round trip carries the word, and --set takes it
    code, out, _ = run(capsys, "spec", "vit_b16_linear")
    assert code == 0 and 'attention = "linear"' in out
    path = tmp_path / "linear.toml"
    path.write_text(out)
    from vitcost.design import parse_design

    assert parse_design(str(path)).spec == get_preset("vit_b16_linear").spec
    assert parse_design("vit_b16:attention=linear").spec == get_preset("vit_b16_linear").spec
    code, _, err = run(capsys, "compare", "-m", "vit_b16:attention=cosine")
    assert code == 2 and err.count("\n") == 1 and "softmax, linear" in err


def test_attention_field_is_checked() -> None:
    with pytest.raises(SpecError, match="must be a word"):
        ViTSpec(dim=64, depth=2, heads=2, attention=1)
    with pytest.raises(SpecError, match="one of softmax, linear"):
        ViTSpec(dim=64, depth=2, heads=2, attention="Linear")
    with pytest.raises(SpecError, match="attention = softmax"):
        ViTSpec(dim=64, depth=2, heads=2, class_tokens=0, rel_pos=True, attention="linear")


def test_linear_attention_params_equal_the_built_net() -> None:
    pytest.importorskip("torch")
    from vitcost.nets import build

    net = build("vit_b16_linear", 224, device="meta")
    params = estimate("vit_b16_linear", 224).params
    assert sum(p.numel() for p in net.parameters()) == params
    assert round(params / 1e6, 2) == 86.57  # ViT-B/16's published params: linear attention adds none


def test_linear_attention_roofline_has_no_fused_kernel() -> None:
    from vitcost.analytic.hardware import get_hardware
    from vitcost.analytic.roofline import roofline

    e = estimate("vit_b16_linear", 512)
    hw = get_hardware("h100-sxm")
    math, flash = roofline(e, hw, Kernel.math), roofline(e, hw, Kernel.flash)
    assert math.time_s == flash.time_s  # the same steps on either kernel
    kinds = {op.kind for op in flash.ops if op.path == "blocks.0.attn"}
    assert kinds == {"phi_k", "kv", "k_sum", "phi_q", "num", "den", "eps", "normalise"}


def test_sam_global_blocks_share_of_the_attention_memory_by_hand(capsys):
    """SAM-B at 1024: 4 global blocks of 12 heads x 4096^2 scores against 8 window blocks of 25 windows
    (64 padded to 70, windows of 14) x 12 heads x 196^2 — the few global blocks hold ~90%."""
    global_scores = 4 * 12 * 4096 * 4096
    window_scores = 8 * 25 * 12 * 196 * 196
    share = global_scores / (global_scores + window_scores)
    assert estimate("sam_vit_b", 1024).global_attn_share == pytest.approx(share, rel=1e-12)
    assert estimate("vit_b16", 1024).global_attn_share is None
    try:
        main(["compare", "-m", "sam_vit_b", "-r", "1024"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert f"sam_vit_b's global blocks hold {share:.0%} at 1024 of the attention-score memory" in out


def test_linear_attention_saving_is_computed_from_the_softmax_twin():
    """The course's "~60%" is computed, not quoted: the saving is 1 - peak(linear) / peak(softmax) for the
    same design, size and kernel. (Each peak is held against measured forwards in the memory tests.)"""
    from vitcost.report.rows import compare_rows

    for res in (224, 1024):
        (row,) = compare_rows([estimate("vit_b16_linear", res)])
        softmax = estimate("vit_b16", res).activation_peak_bytes
        linear = estimate("vit_b16_linear", res).activation_peak_bytes
        assert row["linear_attn_saving"] == pytest.approx(1 - linear / softmax, rel=1e-12)
    (row,) = compare_rows([estimate("vit_b16", 224)])
    assert row["linear_attn_saving"] is None
