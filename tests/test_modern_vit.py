"""The modern ViT variants timm ships: no absolute position embedding, register tokens, average pooling
with fc_norm, layer scale, SwiGLU (with a norm inside), no key bias, rotary position embedding.

Expected figures: timm 1.0.31's own modules, measured by `benchmarks/measure_timm_designs.py` into
tests/data/timm_designs.json (params, the fvcore count, the FlopCounterMode count, at timm's default
resolution and a second one), and fvcore / FlopCounterMode on vitcost's reference nets through
`check_model`; none is copied from vitcost's own output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vitcost import estimate
from vitcost.analytic.memory import predict_memory
from vitcost.cli import main
from vitcost.design import parse_design
from vitcost.errors import SpecError
from vitcost.specs import MViTSpec, ViTSpec
from vitcost.vocab import Kernel, Optimizer
from vitcost.zoo import get_preset

TIMM = json.loads((Path(__file__).parent / "data" / "timm_designs.json").read_text())
VIT_DESIGNS = [name for name in TIMM["designs"] if not name.startswith("mvitv2")]
F32 = 4


@pytest.fixture
def one_thread():
    """Memory measurements on one thread (the allocator's peak does not depend on the thread pool then)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


def fvcore_einsum(macs: int) -> int:
    """fvcore's einsum handle for an equation it has no closed form for: numpy's einsum_path prints the
    optimised flop count (2 per MAC here) to four significant digits, and fvcore halves what it parses."""
    return math.floor(float(f"{2 * macs:.3e}") / 2)


def samvit_fvcore_quirks(res: int) -> int:
    """What fvcore counts on timm's samvit_base_patch16_224 beyond the exact MACs and norms: each of the
    two rel-pos einsums per block rounded by `fvcore_einsum`, and the head's adaptive_avg_pool2d, one per
    input element. Blocks 2, 5, 8, 11 attend over the g x g grid, the others inside 14 x 14 windows of
    the grid padded to a multiple of 14; 12 heads of width 64; einsum bhwc,hkc->bhwk: b*h*w*k*c MACs."""
    g, heads, d, m = res // 16, 12, 64, 14
    windows = math.ceil(g / m) ** 2
    extra = 0
    for block in range(12):
        batch, side = (heads, g) if block in (2, 5, 8, 11) else (heads * windows, m)
        macs = batch * side * side * side * d  # rel_h (and rel_w, the same on a square grid)
        extra += 2 * (fvcore_einsum(macs) - macs)
    return extra + g * g * 768


@pytest.mark.parametrize("name", VIT_DESIGNS)
def test_timm_designs_at_two_sizes(name: str) -> None:
    """Params, FlopCounterMode and fvcore equal timm's own modules at both sizes."""
    for m in TIMM["designs"][name]:
        e = estimate(name, m["res"])
        assert e.params == m["params"], m["res"]
        assert e.count("torch") == m["torch"], m["res"]
        quirks = samvit_fvcore_quirks(m["res"]) if name.startswith("samvit") else 0
        assert e.count("fvcore") + quirks == m["fvcore"], m["res"]
        assert (e.spec.num_classes == 0) == (m["num_classes"] == 0)  # EVA02 builds without a head


def test_every_timm_name_is_a_preset_at_its_default_size() -> None:
    for name in VIT_DESIGNS:
        p = get_preset(name)
        assert p.res == TIMM["designs"][name][0]["res"]
        assert p.params_m == round(TIMM["designs"][name][0]["params"] / 1e6, 2)


def test_eva02_mlp_width_and_parameters_by_hand() -> None:
    """EVA02-S: hidden int(384 * 8/3) = 1024; per block norm1, qkv (3D^2 + q and v biases), proj, norm2,
    fc1 (D -> 2H), fc2; no MLP norm; embedding conv 14 x 14, class token, 257 position rows, fc_norm."""
    d, h, g = 384, 1024, 16
    block = 2 * d + (3 * d * d + 2 * d) + (d * d + d) + 2 * d + (d * 2 * h + 2 * h) + (h * d + d)
    embed = 3 * 14 * 14 * d + d + d + (g * g + 1) * d
    assert estimate("eva02_s14", 224).params == embed + 12 * block + 2 * d
    # EVA02-B adds a LayerNorm over the 2048 hidden units in every MLP
    assert get_preset("eva02_b14").spec.mlp_hidden == 2048


# EViT after blocks 2 and 3 (the class-token scores, a matmul, land on blocks.1.attn and blocks.2.attn);
# top-k: 9 keys per query
TINY_EVIT = ViTSpec(dim=32, depth=4, heads=2, patch=8, prune_blocks=(2, 3), keep_rate=0.7, num_classes=5)
TINY_TOPK = ViTSpec(dim=32, depth=2, heads=2, patch=8, topk=9, num_classes=5)
TINY = {
    "EViT": TINY_EVIT,
    "top-k": TINY_TOPK,
    "registers, fc_norm, layer scale": ViTSpec(dim=32, depth=2, heads=2, patch=8, class_tokens=0, reg_tokens=4,
                                                fc_norm=True, layer_scale=True, num_classes=5),
    "class token, registers, avg pool": ViTSpec(dim=32, depth=2, heads=2, patch=8, reg_tokens=2, global_pool="avg",
                                                num_classes=5),
    "EVA02-B-like": ViTSpec(dim=32, depth=2, heads=2, patch=8, mlp_ratio=8 / 3, mlp="swiglu", mlp_norm=True,
                            k_bias=False, rope=True, global_pool="avg", fc_norm=True, num_classes=0),
    "EVA02-S-like with a head": ViTSpec(dim=32, depth=2, heads=2, patch=8, mlp_ratio=8 / 3, mlp="swiglu",
                                        k_bias=False, rope=True, global_pool="avg", fc_norm=True, num_classes=5),
    "SAM without position embedding": ViTSpec(dim=32, depth=2, heads=2, patch=8, class_tokens=0, window=3,
                                              global_blocks=(1,), rel_pos=True, pos_embed=False),
    "MViTv2 widening in the MLP": MViTSpec(dims=(16, 32, 64), depths=(2, 2, 1), heads=(1, 2, 4), num_classes=10,
                                           expand_attn=False),
}


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize(("res", "batch", "attn"), [(48, 1, "math"), (64, 2, "sdpa")])
def test_tiny_reference_nets_check_exactly(name: str, res: int, batch: int, attn: str) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model

    for convention in ("fvcore", "torch"):
        r = check_model(TINY[name], res, batch=batch, attn=attn, convention=convention, method="real")
        assert r.status == "PASS", r.first_mismatch
        assert r.analytic == r.fvcore == r.torch > 0


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_tiny_reference_nets_memory(name: str, attn: str, one_thread) -> None:
    torch = one_thread
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build

    spec, res, batch = TINY[name], 48, 2
    measured = measure_forward_memory(build(spec, res, attn=attn).eval(), torch.randn(batch, 3, res, res))
    pred = predict_memory(estimate(spec, res, batch), Kernel(attn))
    assert measured.score_bytes == pred.stored_score_bytes
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


def test_rope_scores_and_memory_at_eva02_base_width() -> None:
    """Two EVA02-B blocks at 224 (a 16 x 16 grid and a class token: 257 tokens, 12 heads): the math path
    stores 2 * 12 * 257^2 fp32 scores; the peak within 10% of the measured forward."""
    torch = pytest.importorskip("torch")
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build

    spec = ViTSpec(dim=768, depth=2, heads=12, patch=14, mlp_ratio=8 / 3, mlp="swiglu", mlp_norm=True, k_bias=False,
                   rope=True, global_pool="avg", fc_norm=True, num_classes=0)
    with torch.no_grad():
        measured = measure_forward_memory(build(spec, 224, attn="math").eval(), torch.randn(1, 3, 224, 224))
    pred = predict_memory(estimate(spec, 224, 1), Kernel.math)
    assert pred.stored_score_bytes == measured.score_bytes == F32 * 2 * 12 * 257 * 257
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


@pytest.mark.parametrize(("fields", "match"), [
    ({"heads": 256, "rope": True}, "multiple of 4"),  # head width 3
    ({"heads": 12, "patch": 16, "rope": True, "class_tokens": 0, "window": 7}, "rope rotates"),
    ({"class_tokens": 0, "global_pool": "token"}, "class token 0"),
    ({"global_pool": "max"}, "global_pool must be"),
    ({"mlp": "geglu"}, "mlp must be"),
    ({"class_tokens": 0, "reg_tokens": 4, "window": 7}, "plain token sequence"),
    ({"reg_tokens": -1}, "0 or more"),
])
def test_bad_modern_fields_are_spec_errors(fields: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        ViTSpec(**{"dim": 768, "depth": 2, "heads": 12, **fields})


def test_rope_on_a_bad_head_width_is_one_line_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "-m", "vit_b16:heads=256,rope=true"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "multiple of 4" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_reference_nets_training_step_memory(name: str, one_thread) -> None:
    """One AdamW step on the CPU: what autograd saves within 0.1% (SwiGLU saves the gate's storage, fc1's
    whole output, and SiLU's output; EViT's gather its source, the block's residual sum; top-k's matmul a
    copy of the strided K^T), the step's peak within 10% (top-k's: the gather's backward zero-fills the
    gradient of v broadcast over the queries, [B, h, N, N, d], and scatter-adds into it)."""
    torch = one_thread
    from vitcost.analytic.train_memory import train_memory
    from vitcost.measure.train_memory import measure_train_step
    from vitcost.nets import build

    spec, res = TINY[name], 48
    measured = measure_train_step(build(spec, res, attn="math"), torch.randn(2, 3, res, res), optimizer="adamw")
    pred = train_memory(estimate(spec, res, 2, "fp32", "math"), Optimizer.adamw, 0)
    assert pred.weights == measured.weights_bytes
    assert pred.activations_saved == pytest.approx(measured.activations_saved_bytes, rel=0.001)
    assert pred.step_peak == pytest.approx(measured.step_peak_bytes, rel=0.10), pred.peak_at


# ---------------------------------------------------------------------------------------------
# MViTv2-L (timm's mvitv2_large): channels widen in the MLP of each stage's last block (expand_attn off)


def mvitv2_large_fvcore_quirks(res: int) -> int:
    """fvcore's rounding of timm's two rel-pos einsums per block (`fvcore_einsum`): byhwc,hkc->byhwk, B*n*
    qh*qw*kh*d MACs (and the w one alike). Stem stride 4; stages of 2, 6, 36, 4 blocks with 2, 4, 8, 16
    heads of width 72 (every block attends at its stage's input width: 144 * 2^s over 2 * 2^s heads);
    the first block of stages 1.. pools q by 2; k and v pooled by the stride 4, 2, 1, 1 (kernel 3,
    padding 1: ceil(side / stride))."""
    g, kv, extra = res // 4, 4, 0
    for s, depth in enumerate((2, 6, 36, 4)):
        for i in range(depth):
            side_in = g
            if s and i == 0:
                kv, g = max(kv // 2, 1), g // 2
            macs = 2 ** (s + 1) * g * g * math.ceil(side_in / kv) * 72
            extra += 2 * (fvcore_einsum(macs) - macs)
    return extra


def test_mvitv2_large_against_timm_at_two_sizes() -> None:
    """MViTv2 Table 1 gives 218M / 42.1G; timm's module has 217.99M and fvcore counts 43.87 G."""
    for m in TIMM["designs"]["mvitv2_large"]:
        e = estimate("mvitv2_large", m["res"])
        assert e.params == m["params"] and e.count("torch") == m["torch"], m["res"]
        assert e.count("fvcore") + mvitv2_large_fvcore_quirks(m["res"]) == m["fvcore"], m["res"]
    p = get_preset("mvitv2_large")
    assert (p.params_m, p.gmacs) == (round(TIMM["designs"]["mvitv2_large"][0]["params"] / 1e6, 2), 43.87)


def test_expand_attn_off_moves_the_widening_into_the_mlp_by_hand() -> None:
    """Two stages of one block, 16 -> 32 channels, on a 16 x 16 stem grid: with expand_attn the second
    block's qkv maps 16 -> 96 and a shortcut_proj_attn 16 -> 32 runs; without, the first block's fc2
    writes 32 channels and a shortcut_proj_mlp 16 -> 32 reads norm2's output."""
    on = MViTSpec(dims=(16, 32), depths=(1, 1), heads=(1, 2), num_classes=10)
    off = MViTSpec(dims=(16, 32), depths=(1, 1), heads=(1, 2), num_classes=10, expand_attn=False)
    rows = {name: {op.path: op for op in estimate(s, 64).ops if op.kind == "linear"} for name, s in
            (("on", on), ("off", off))}
    assert "stages.0.blocks.0.shortcut_proj_mlp" in rows["off"] and "stages.1.blocks.0.shortcut_proj_attn" in rows["on"]
    assert "stages.0.blocks.0.shortcut_proj_mlp" not in rows["on"]
    assert "stages.1.blocks.0.shortcut_proj_attn" not in rows["off"]
    assert rows["off"]["stages.0.blocks.0.shortcut_proj_mlp"].cost.params == 16 * 32 + 32
    assert rows["off"]["stages.0.blocks.0.mlp.fc2"].cost.params == 64 * 32 + 32  # hidden 4 x 16
    assert rows["off"]["stages.1.blocks.0.attn.qkv"].cost.params == 32 * 96 + 96
    assert rows["on"]["stages.1.blocks.0.attn.qkv"].cost.params == 16 * 96 + 96




# ---------------------------------------------------------------------------------------------
# EViT (Liang et al. 2022): token pruning and fusion after the attention of given blocks


def deit_s_evit_by_hand(keep: float, blocks: tuple[int, ...], res: int = 224) -> tuple[int, int]:
    """(MACs, LayerNorm elements) of DeiT-S (D 384, 6 heads of 64, MLP 1536, 12 blocks) with EViT: a pruning
    block attends over its n tokens, keeps ceil(keep * (n - 1)) patch tokens plus the class token and one
    fused token, ranks by the class token's scores computed apart (h * n * d MACs), and runs its MLP on
    what is left. Every block: qkv 3nD^2, scores 2n^2 D, proj nD^2, MLP 2 * 4 nD^2."""
    d, heads, n = 384, 6, (res // 16) ** 2 + 1
    macs, norms = (n - 1) * 3 * 256 * d, 0  # the patch embedding
    for i in range(1, 13):
        macs += 4 * n * d * d + 2 * n * n * d
        norms += n * d
        if i in blocks:
            macs += heads * n * (d // heads)  # q_cls @ K^T
            left = 1 + math.ceil(keep * (n - 1)) + 1
            n = left
        macs += 8 * n * d * d
        norms += n * d
    return macs + 1000 * d, norms + n * d  # head on the class token; the final norm


def test_evit_reproduces_the_papers_gflops() -> None:
    """EViT Table 1: DeiT-S 4.6 GFLOPs, EViT-DeiT-S at keep rate 0.7 (blocks 4, 7, 10) 3.0 GFLOPs; the
    tokens after the three pruning blocks: 197 -> 140 -> 100 -> 72."""
    macs, norms = deit_s_evit_by_hand(0.7, (4, 7, 10))
    e = estimate("deit_s16_evit", 224)
    assert e.macs == macs and e.count("fvcore") == macs + 5 * norms
    assert round(e.count("fvcore") / 1e9, 1) == 3.0 and round(estimate("vit_s16", 224).count("fvcore") / 1e9, 1) == 4.6
    spec = get_preset("deit_s16_evit").spec
    n = 197
    seen = []
    for i in range(12):
        n = spec.tokens_after(i, n)
        seen.append(n)
    assert seen[3] == 140 and seen[6] == 100 and seen[9] == 72 and seen[-1] == 72


def test_evit_tokens_at_keep_rate_one_are_untouched() -> None:
    same = ViTSpec(dim=384, depth=12, heads=6, prune_blocks=(4, 7, 10), keep_rate=1.0)
    assert estimate(same, 224).macs == estimate("vit_s16", 224).macs


@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_tiny_evit_memory(attn: str, one_thread) -> None:
    """Stored scores: every block's [B, h, n, n] on the math path, and on both paths each pruning block's
    class-token scores [B, h, 1, n] (64 patches + 1 -> 1 + 45 + 1 = 47 -> 1 + 33 + 1 = 35 tokens)."""
    torch = one_thread
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build

    batch, heads = 2, 2
    measured = measure_forward_memory(build(TINY_EVIT, 64, attn=attn).eval(), torch.randn(batch, 3, 64, 64))
    pred = predict_memory(estimate(TINY_EVIT, 64, batch), Kernel(attn))
    cls = batch * heads * (65 + 47)
    full = batch * heads * (65 * 65 + 65 * 65 + 47 * 47 + 35 * 35) if attn == "math" else 0
    assert measured.score_bytes == pred.stored_score_bytes == F32 * (cls + full)
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


@pytest.mark.parametrize(("fields", "match"), [
    ({"prune_blocks": (4,), "keep_rate": 0.0}, r"in \(0, 1\]"),
    ({"prune_blocks": (4,), "keep_rate": 1.5}, r"in \(0, 1\]"),
    ({"prune_blocks": (13,), "keep_rate": 0.7}, "1-based block numbers in 1..12"),
    ({"prune_blocks": (0,), "keep_rate": 0.7}, "1-based block numbers in 1..12"),
    ({"prune_blocks": (4,), "keep_rate": 0.7, "class_tokens": 0}, "needs one class token"),
])
def test_bad_evit_fields_are_spec_errors(fields: dict, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        ViTSpec(**{"dim": 384, "depth": 12, "heads": 6, **fields})


@pytest.mark.parametrize(("override", "message"), [
    ("deit_s16_evit:keep_rate=1.5", "in (0, 1]"),
    ("deit_s16_evit:prune_blocks=4-7-13", "1..12"),
    ("deit_s16_evit:class_tokens=0", "needs one class token"),
])
def test_bad_evit_designs_are_one_line_exit_2(capsys, override: str, message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "-m", override])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and message in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# Top-k sparse attention: each query keeps the k keys of its highest scores


def test_topk_vit_b16_by_hand() -> None:
    """ViT-B/16 at 224 with k = 49 of the 197 keys: the scores stay N^2 d per head, the weighted sum of the
    gathered values costs N k d instead of N^2 d; plus the class-free overheads, none a MAC."""
    e, dense = estimate("vit_b16_topk", 224), estimate("vit_b16", 224)
    assert dense.macs - e.macs == 12 * 12 * 197 * (197 - 49) * 64
    assert e.params == dense.params
    # the stored scores: the softmax over the k selected (the raw N x N scores are not a softmax output)
    assert e.attn_matrix_elems == 12 * 12 * 197 * 49


@pytest.mark.parametrize(("res", "batch", "attn"), [(64, 2, "math"), (64, 1, "sdpa"), (224, 1, "math")])
def test_topk_memory(res: int, batch: int, attn: str, one_thread) -> None:
    """Both paths run the same code: stored scores B * h * N * k per block (the softmax over the k)."""
    torch = one_thread
    from vitcost.measure.memory import measure_forward_memory
    from vitcost.nets import build

    spec = TINY_TOPK if res == 64 else ViTSpec(dim=768, depth=2, heads=12, topk=49)
    with torch.no_grad():
        measured = measure_forward_memory(build(spec, res, attn=attn).eval(), torch.randn(batch, 3, res, res))
    pred = predict_memory(estimate(spec, res, batch), Kernel(attn))
    n = (res // spec.patch) ** 2 + 1
    assert measured.score_bytes == pred.stored_score_bytes == F32 * spec.depth * batch * spec.heads * n * spec.topk
    assert measured.peak_bytes == pytest.approx(pred.activation_peak_bytes, rel=0.10), pred.peak_at


def test_topk_bad_values() -> None:
    with pytest.raises(SpecError, match="0 \\(all keys\\) or more"):
        ViTSpec(dim=64, depth=2, heads=2, topk=-1)
    with pytest.raises(SpecError, match="global softmax attention"):
        ViTSpec(dim=64, depth=2, heads=2, class_tokens=0, window=7, topk=8)


def test_topk_larger_than_the_keys_is_one_line_exit_2(capsys) -> None:
    """At 96 px ViT-B/16 has 36 + 1 keys, fewer than the preset's 49."""
    with pytest.raises(SystemExit) as exc:
        main(["compare", "-m", "vit_b16_topk", "-r", "96"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "more than the 37 keys" in err and len(err.splitlines()) == 1


def test_savings_sparsity_rows(capsys) -> None:
    """The course's attention-sparsity row, computed: EViT on DeiT-S saves the MLP and attention of the
    pruned tokens; top-k only the weighted sum's MACs, while its gathers cost memory."""
    with pytest.raises(SystemExit) as exc:
        main(["savings", "vit_s16", "-r", "224", "-b", "2", "-f", "json"])
    rows = {r["technique"]: r for r in json.loads(capsys.readouterr().out)}
    assert exc.value.code == 0
    evit, topk = rows["token pruning (EViT)"], rows["top-k sparse attention"]
    assert (evit["course_memory_saved"], evit["course_speedup"]) == ("10-30%", "1.2-1.5x")
    assert (topk["course_memory_saved"], topk["course_speedup"]) == ("10-30%", "1.2-1.5x")
    from vitcost.analytic.training import train_cost

    assert evit["flops"] == train_cost(estimate("deit_s16_evit", 224, 2)).count("flops")
    assert evit["flops_ratio"] < 0.7 and topk["flops_ratio"] < 1


def test_savings_sparsity_rows_left_out_with_why(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["savings", "vit_b16_gap", "-r", "224"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "left out: token pruning (EViT): ViTSpec.prune_blocks needs one class token" in out


def test_savings_for_inference(capsys) -> None:
    """--mode inference: one forward's memory (weights, input, activation peak), FLOPs and time; no
    checkpointing rows. EViT's forward FLOPs are those of deit_s16_evit."""
    with pytest.raises(SystemExit) as exc:
        main(["savings", "vit_s16", "-r", "224", "-b", "2", "--mode", "inference", "-f", "json"])
    rows = {r["technique"]: r for r in json.loads(capsys.readouterr().out)}
    assert exc.value.code == 0 and all(r["mode"] == "inference" for r in rows.values())
    assert not any(t.startswith("checkpointing") for t in rows)
    assert rows["token pruning (EViT)"]["flops"] == estimate("deit_s16_evit", 224, 2).count("flops")
    assert rows["baseline"]["step_peak_bytes"] == predict_memory(estimate("vit_s16", 224, 2)).total_bytes


def test_attention_overtakes_swiglu_and_topk_designs() -> None:
    """EVA02-B: d = 768, h = 2048, SwiGLU's three products per hidden unit: scores 2 N^2 d against
    4 N d^2 + 3 N d h, equal at N = 2d + 3h/2 = 4608, less the class token: R = 14 sqrt(4607) = 950.2,
    first reached on the 14-px lattice at 952. Top-k ViT-B/16 (k = 49): N^2 d + N k d against 12 N d^2 at
    N = 4d + 2h - k = 9167: R = 16 sqrt(9166) = 1531.8, reached at 1536."""
    from vitcost.analytic.scaling import attention_overtakes, overtake_closed_form

    assert overtake_closed_form(get_preset("eva02_b14").spec) == pytest.approx(14 * math.sqrt(4607))
    assert overtake_closed_form(get_preset("vit_b16_topk").spec) == pytest.approx(16 * math.sqrt(9166))
    assert attention_overtakes(parse_design("eva02_b14")).res == 952
    assert attention_overtakes(parse_design("vit_b16_topk")).res == 1536
    assert overtake_closed_form(get_preset("deit_s16_evit").spec) is None  # blocks see different N


@pytest.mark.parametrize(("model", "res"), [("eva02_s14", 224), ("vit_m16_reg4_gap", 256), ("samvit_b16_224", 224),
                                            ("deit_s16_evit", 224), ("vit_b16_topk", 224), ("mvitv2_large", 224)])
def test_full_size_reference_nets_check_exactly_on_meta(model: str, res: int) -> None:
    """The presets' own reference nets, batch 2, counted on the meta device (fvcore's rules on the
    dispatch pass and FlopCounterMode), layer by layer."""
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from vitcost.measure.check import check_model

    r = check_model(model, res, batch=2, attn="sdpa", convention="fvcore", method="meta")
    assert r.status == "PASS", r.first_mismatch
    assert r.analytic == r.fvcore == r.torch > 0


def test_memory_wall_of_a_pruned_design_is_searched() -> None:
    """EViT rounds the tokens it keeps (ceil), so the peak is no single polynomial of R: the wall is found
    by search, and the size it reports fits while the next one up does not (by the exact prediction)."""
    from vitcost.analytic.memory_wall import memory_wall, train_memory_wall
    from vitcost.analytic.train_memory import train_memory

    budget = 16 * 2**30
    w = memory_wall(parse_design("deit_s16_evit"), budget)
    assert estimate("deit_s16_evit", w.res).memory.total_bytes <= budget
    assert estimate("deit_s16_evit", w.next_res).memory.total_bytes > budget and w.next_res == w.res + 16
    t = train_memory_wall(parse_design("deit_s16_evit"), budget, solve="res")
    assert train_memory(estimate("deit_s16_evit", t.value), Optimizer.adamw).step_peak <= budget
    assert train_memory(estimate("deit_s16_evit", t.next_value), Optimizer.adamw).step_peak > budget


def test_memory_wall_of_a_topk_design_samples_where_it_runs() -> None:
    """Top-k with k = 49 cannot run below 49 keys (112 px: 7 x 7 + 1 = 50): the wall's samples start on the
    first lattice size it runs at, and the size it reports fits while the next one up does not."""
    from vitcost.analytic.memory_wall import memory_wall

    budget = 80 * 10**9
    w = memory_wall(parse_design("vit_b16_topk"), budget)
    assert estimate("vit_b16_topk", w.res).memory.total_bytes <= budget
    assert estimate("vit_b16_topk", w.next_res).memory.total_bytes > budget and w.next_res == w.res + 16


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_reference_nets_training_step_flops(name: str) -> None:
    """One training step against FlopCounterMode over forward and backward, layer by layer: EViT's and
    top-k's products of two activations give both operands a gradient (2x their MACs backward)."""
    pytest.importorskip("torch")
    from vitcost.measure.check import check_model

    r = check_model(TINY[name], 48, batch=2, attn="math", convention="torch", method="real", mode="train")
    assert r.status == "PASS", r.first_mismatch
    assert r.analytic == r.torch - r.known > 0  # known: FlopCounterMode's depthwise-conv defect (MViTv2's pools)
