"""MViTv2 hybrid window attention (MViTv2 Sec. 4, as detectron2's MViT backbone builds it): the spec's
validation, the walker against fvcore and FlopCounterMode layer by layer, a windowed block's attention and
the score bytes derived by hand, the net against global attention where one window spans each grid, and
the one-line errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from vitcost import estimate
from vitcost.analytic.memory import predict_memory
from vitcost.cli import main
from vitcost.errors import SpecError
from vitcost.specs import MViTSpec
from vitcost.vocab import Kernel

# Three stages (q strides 1, 2, 2; K/V strides 4, 2, 1), five blocks: 0, 1 and 3 attend in windows, 2 and 4
# (the last blocks of the last two stages) globally, block 2 with its K/V stride doubled (2 -> 4). The window
# is 8 on the first stage's grid: block 0 has 8x8 q windows and 2x2 k/v windows; block 1, the first of
# stage 1, partitions its input's 8-window into 4x4 q and 4x4 k/v windows; block 3 its input's 4-window
# into 2x2 q and 4x4 k/v windows.
HYBRID = MViTSpec(dims=(8, 16, 32), depths=(1, 2, 2), heads=(1, 2, 2), window=8, global_blocks=(2, 4),
                  double_kv_blocks=(2,), num_classes=10)
HYBRID_TOML = """\
family = "mvit"
dims = [8, 16, 32]
depths = [1, 2, 2]
heads = [1, 2, 2]
window = 8
global_blocks = [2, 4]
double_kv_blocks = [2]
num_classes = 10
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def pooled(g: int, stride: int) -> int:
    """A 3x3 conv of padding 1 at `stride` on g tokens: floor((g - 1) / stride) + 1."""
    return (g - 1) // stride + 1


def windows(g: int, m: int) -> int:
    """m x m windows of a g x g grid zero-padded to a multiple of m."""
    return (-(-g // m)) ** 2


def attention_by_hand(res: int, batch: int) -> dict[str, tuple[int, int]]:
    """(score elements, MACs) of each block's attention: QK^T and AV Nq*Nk*d each, the decomposed relative
    positions Nq*(kh + kw)*d, per head and window (or image, for a global block)."""
    g0 = (res + 2 * 3 - 7) // 4 + 1  # the 7x7 stride-4 stem, padding 3
    g1, g2 = pooled(g0, 2), pooled(pooled(g0, 2), 2)
    out = {}
    # (path, heads, d, windows or 1, q window or grid side, k/v window or grid side)
    for path, n, d, w, mq, mk in [
        ("stages.0.blocks.0.attn", 1, 8, windows(g0, 8), 8, 2),
        ("stages.1.blocks.0.attn", 2, 8, windows(g1, 4), 4, 4),
        ("stages.1.blocks.1.attn", 2, 8, 1, g1, pooled(g1, 4)),
        ("stages.2.blocks.0.attn", 2, 16, windows(g2, 2), 2, 4),
        ("stages.2.blocks.1.attn", 2, 16, 1, g2, g2),
    ]:
        scores = batch * w * n * mq**2 * mk**2
        out[path] = (scores, 2 * scores * d + batch * w * n * mq**2 * 2 * mk * d)
    return out


def test_a_windowed_block_by_hand():
    """Stage 0 at 72 px, batch 2: the stem gives an 18x18 grid; q (stride 1) is padded to 24x24, 9 windows
    of 8x8; k/v (stride 4: 5x5) padded to 6x6, 9 windows of 2x2. One head of width 8:
    QK^T 2*9*64*4*8 = 36864, AV 36864, rel_h and rel_w 2*9*64*(2 + 2)*8 = 36864 MACs; scores 2*9*64*4."""
    by_hand = attention_by_hand(72, 2)["stages.0.blocks.0.attn"]
    assert by_hand == (2 * 9 * 64 * 4, 3 * 36864)
    est = estimate(HYBRID, 72, 2)
    (op,) = [op for op in est.ops if op.path == "stages.0.blocks.0.attn" and op.kind == "attention"]
    assert (op.cost.attn, op.cost.macs) == by_hand
    assert (op.call.batch, op.call.heads, op.call.nq, op.call.nkv, op.call.rel) == (18, 1, 64, 4, (8, 8, 2, 2))
    # the tables span one window: 2 * max(8, 2) - 1 rows of 8, two axes; a global block's span its grids
    params = {op.path: op.cost.params for op in est.ops if op.kind == "param"}
    assert params["stages.0.blocks.0.attn.rel_pos_h"] == params["stages.0.blocks.0.attn.rel_pos_w"] == 15 * 8
    assert params["stages.1.blocks.1.attn.rel_pos_h"] == (2 * 9 - 1) * 8


@pytest.mark.parametrize("res", [32, 64, 72])
def test_score_elements_and_bytes_by_hand(res: int):
    """Every attention's scores, and the bytes a math forward stores (all layers, fp32), against the hand
    count; 32 px: one window per grid, 64: 2x2 windows, 72: padded windows."""
    by_hand = attention_by_hand(res, 2)
    est = estimate(HYBRID, res, 2)
    assert {op.path: (op.cost.attn, op.cost.macs) for op in est.ops if op.kind == "attention"} == by_hand
    scores = sum(s for s, _ in by_hand.values())
    assert predict_memory(est, Kernel.math).stored_score_bytes == 4 * scores
    assert predict_memory(est, Kernel.sdpa).stored_score_bytes == 0


def test_detectron2_layout_of_mvitv2_t():
    """detectron2's Hwin MViTv2-T (depth 10, last_block_indexes (0, 2, 7, 9)): global attention in blocks 2, 7
    and 9, K/V strides of blocks 2 and 7 doubled, window 56 halved at each stage change, the first block of a
    stage partitioning its input's window."""
    spec = replace(MViTSpec(dims=(96, 192, 384, 768), depths=(1, 2, 5, 2), heads=(1, 2, 4, 8)), window=56,
                   global_blocks=(2, 7, 9), double_kv_blocks=(2, 7))
    blocks = [(s, i) for s, d in enumerate(spec.depths) for i in range(d)]
    assert [spec.block_window(s, i) for s, i in blocks] == [56, 56, 0, 28, 14, 14, 14, 0, 14, 0]
    assert [spec.block_kv_stride(s, i) for s, i in blocks] == [4, 2, 4, 1, 1, 1, 1, 2, 1, 1]
    est = estimate(spec, 1024)
    calls = {op.path: op.call for op in est.ops if op.kind == "attention"}
    # block 3 (stage 2's first) on stage 1's 128x128 grid: q windows 28/2 = 14 on the 64x64 pooled grid (5x5
    # windows, padded to 70), k/v windows 28/1 on the 128x128 one (5x5, padded to 140)
    a = calls["stages.2.blocks.0.attn"]
    assert (a.batch, a.nq, a.nkv) == (25, 14 * 14, 28 * 28)
    g = calls["stages.1.blocks.1.attn"]  # global, K/V stride 4 on a 128x128 grid
    assert (g.batch, g.nq, g.nkv) == (1, 128 * 128, 32 * 32)


# ---------------------------------------------------------------------------------------------
# Against the reference net (torch)


@pytest.mark.parametrize(("res", "batch", "attn"), [(32, 1, "math"), (64, 2, "sdpa"), (72, 1, "math")])
def test_exact_per_layer(passes_exactly, res: int, batch: int, attn: str):
    pytest.importorskip("fvcore")
    passes_exactly(HYBRID, res, batch=batch, attn=attn)


def test_spec_file_passes_the_check(capsys, tmp_path):
    """`vitcost check` of a hybrid spec file at a padded size, batch 2, on the sdpa path: every layer equal to
    FlopCounterMode's count; each attention's equal to the hand count of its MACs."""
    pytest.importorskip("torch")
    path = tmp_path / "hybrid.toml"
    path.write_text(HYBRID_TOML)
    code, out, err = run(capsys, "check", "-m", str(path), "-r", "72", "--batch", "2", "--attn", "sdpa",
                         "--method", "real", "--tol", "0", "--by-layer", "--format", "json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["status"] == "PASS" and row["first_mismatch"] is None, row
    attn = {layer["path"]: layer["torch"] for layer in row["layers"] if layer["path"].endswith(".attn")}
    assert attn == {p: macs for p, (_, macs) in attention_by_hand(72, 2).items()}


def test_one_window_per_grid_is_global_attention():
    """With a window as large as every grid (16 at 64 px: 16x16, 8x8, 4x4) the windows are the grids, the
    tables have the global blocks' size, and the hybrid net computes what the global net does."""
    torch = pytest.importorskip("torch")
    from vitcost.nets import build

    base = replace(HYBRID, window=0, global_blocks=(), double_kv_blocks=())
    torch.manual_seed(0)
    glob = build(base, 64).eval()
    win = build(replace(base, window=16), 64).eval()
    win.load_state_dict(glob.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(win(x), glob(x))
        # a smaller window changes the result (the windows are not the grid)
        small = build(replace(base, window=8), 64).eval()
        assert not torch.allclose(small(x), glob(x))


# ---------------------------------------------------------------------------------------------
# Bad designs


@pytest.mark.parametrize(("fields", "message"), [
    ({"window": 12}, "give a multiple of 8"),  # block 0's K/V stride 4, stage 3's first block's strides 8
    ({"window": -8}, "window must be 0 or more"),
    ({"window": 56, "global_blocks": (10,)}, "global_blocks must be distinct block indices in 0..9"),
    ({"window": 56, "global_blocks": (2, 2)}, "global_blocks must be distinct"),
    ({"global_blocks": (2,)}, "global_blocks needs window > 0"),
    ({"double_kv_blocks": (10,)}, "double_kv_blocks must be distinct block indices in 0..9"),
])
def test_bad_windows_are_spec_errors(fields, message):
    with pytest.raises(SpecError, match=message):
        MViTSpec(dims=(96, 192, 384, 768), depths=(1, 2, 5, 2), heads=(1, 2, 4, 8), **fields)


@pytest.mark.parametrize(("model", "res", "needle"), [
    ("mvitv2_t:window=12", "224", "MViTSpec.window = 12 does not split into whole q and k/v windows"),
    ("mvitv2_t:window=56,global_blocks=10", "224", "global_blocks must be distinct block indices"),
    ("mvitv2_t:global_blocks=2", "224", "global_blocks needs window > 0"),
    ("mvitv2_t:window=56", "8x224x224", "not a clip of 8 frames"),  # the windows partition one frame's grid
])
def test_bad_windows_are_one_line_and_exit_2(capsys, model: str, res: str, needle: str):
    code, out, err = run(capsys, "compare", "-m", model, "-r", res)
    assert code == 2 and out == ""
    assert err.startswith("vitcost: error: ") and err.count("\n") == 1 and needle in err
