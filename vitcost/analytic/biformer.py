"""BiFormer walker (Zhu et al. 2023, bi-level routing attention) and the memory of its blocks.

Bi-level routing attention (BRA) on an h x w grid of width C, S = n_win regions a side, top-k regions per
region, m heads of d = C/m. The grid is zero-padded at the bottom/right to hp x wp, multiples of S, so each
of the S^2 regions holds w2 = (hp/S)(wp/S) tokens. Per image (BiFormer Sec. 3.2; MACs):
    qkv           hp wp C * 3C                       one linear for q, k and v
    region means  q and k averaged over each region  (elementwise: hp wp C each)
    affinity      A = (Q_r * scale) K_r^T            S^2 * S^2 * C           [S^2, C] @ [C, S^2]
    routing       the top k of each row of A         (one comparison per affinity)
    gather        the k regions' keys and values     S^2 * k * w2 * 2C elements
    attention     each region's w2 queries against its k w2 gathered keys and values, m heads:
                  2 * S^2 * w2 * k w2 * C = 2 k C (hp wp)^2 / S^2
    LCE           a side x side depthwise conv on v  hp wp C side^2
    wo            hp wp C^2
so with S fixed, as the code fixes it (n_win = 7 at every resolution), the fine attention is k/S^2 of
global attention and the class stays O((HW)^2 C). The paper's O((HW)^{4/3}) holds when S grows with
the input, S^3 ~ HW (then the affinity's S^4 C and the attention's (HW)^2/S^2 balance); `complexity`
states the fixed-S class the presets run.

The global stages (topks entry 0, the code's AttentionLePE) are a ViT block on the grid with the same
depthwise conv on the attention's input added to its output: qkv without bias, N = h w tokens,
2 N^2 C MACs, the conv N C side^2, proj N C^2.

Counting conventions: fvcore and FlopCounterMode count the products (linears, convs, the affinity matmul
and the attention); the region means, the top-k selection and the gather are elementwise ops here
(`pool`, `topk`, `gather`: the kinds EViT's and top-k attention's selections use), which neither counter
counts and the `flops` convention counts at one per element.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import ceil_div, conv_out
from vitcost.analytic.liveness import LSE_BYTES, Attend, Call, Step
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import BiFormerSpec
from vitcost.vocab import INT64

STEM_STRIDE = 4  # two 3x3 stride-2 convs
POS_KERNEL = 3  # the depthwise conv position embedding before every block (padding 1)


def stage_grids(spec: BiFormerSpec, h: Any, w: Any) -> list[tuple[Any, Any]]:
    """The grid of every stage: the stem's two 3x3 stride-2 convs, then one more per later stage."""
    gh, gw = conv_out(conv_out(h, 3, 2, 1), 3, 2, 1), conv_out(conv_out(w, 3, 2, 1), 3, 2, 1)
    grids = [(gh, gw)]
    for _ in spec.dims[1:]:
        gh, gw = conv_out(gh, 3, 2, 1), conv_out(gw, 3, 2, 1)
        grids.append((gh, gw))
    return grids


def regions(spec: BiFormerSpec, gh: Any, gw: Any) -> tuple[Any, Any]:
    """The side of one region (hp/S, wp/S) on a grid padded to multiples of S = n_win."""
    return ceil_div(gh, spec.n_win), ceil_div(gw, spec.n_win)


def routing_attention(t: Trace, p: str, b: Any, gh: Any, gw: Any, c: int, spec: BiFormerSpec, s: int) -> None:
    """BRA (nets.biformer.BiLevelRoutingAttention) of one block, path `p` (the block's `attn`)."""
    n_win, k, heads = spec.n_win, spec.topks[s], spec.heads(s)
    rh, rw = regions(spec, gh, gw)
    r2, w2 = n_win * n_win, rh * rw
    rows = b * r2 * w2  # the padded grid's tokens
    # in memory every op of the module is its attention call's (`routing_memory`), which reads its argument
    arg = t.key()
    t.linear(f"{p}.qkv.qkv", rows, c, 3 * c, role="proj")
    t.note(part=True)
    qkv = t.key()
    for _ in "qk":  # the region-level query and key: means of q and k over each region
        t.eltwise(p, rows * c, kind="pool", role="scores", inp=rows * c, out=b * r2 * c)
        t.note("detached", src=(qkv,), part=True)  # read only by the routing, through a detach
    means = t.key()
    side = spec.side_dwconv
    t.conv(f"{p}.lepe", b, c, c, n_win * rh, n_win * rw, kernel=side, stride=1, pad=side // 2, groups=c,
           role="proj")
    t.note(src=("copy",), part=True)  # v laid out as an NCHW grid
    t.eltwise(f"{p}.router", b * r2 * c, kind="mul", role="scores", inp=b * r2 * c)  # Q_r * scale
    t.note("detached", src=(means,), part=True)
    t.matmul(f"{p}.router", b, r2, c, r2)  # A = (Q_r * scale) K_r^T
    t.note("detached", part=True)
    t.eltwise(f"{p}.router", b * r2 * r2, kind="topk", role="scores", inp=b * r2 * r2, out=b * r2 * k)
    t.note("detached", part=True)
    gathered = b * r2 * k * w2 * 2 * c
    t.eltwise(f"{p}.kv_gather", gathered, kind="gather", role="scores", inp=gathered)
    t.note(src=(qkv,), part=True)
    t.attention(p, b * r2, heads, w2, k * w2, c // heads)
    t.note("gathered_kv", src=(f"q={qkv}", f"k={t.key(2)}", f"v={t.key(2)}"), attend="biformer_routing", reads=(arg,))
    out = rows * c
    t.eltwise(p, out)  # + LCE
    t.note(part=True)
    t.linear(f"{p}.wo", rows, c, c, role="proj")
    t.note(part=True)


def global_attention(t: Trace, p: str, b: Any, gh: Any, gw: Any, c: int, spec: BiFormerSpec, s: int) -> None:
    """Global attention with LePE (nets.biformer.AttentionLePE), path `p` (the block's `attn`)."""
    heads, n = spec.heads(s), gh * gw
    t.linear(f"{p}.qkv", b * n, c, 3 * c, role="proj", bias=False)
    t.note(keep=p)  # q, k, v: views of it, locals to the return
    qkv = t.key()
    side = spec.side_dwconv
    t.conv(f"{p}.lepe", b, c, c, gh, gw, kernel=side, stride=1, pad=side // 2, groups=c, role="proj")
    t.note(src=(t.key(3),), keep=p)  # the attention's input (norm1's output); a local to the return
    lepe = t.key()
    t.attention(p, b, heads, n, n, c // heads)
    t.note(src=(f"qkv={qkv}",), attend="biformer_global")
    t.eltwise(p, b * n * c)  # + LePE
    t.note(reads=(lepe,))
    t.linear(f"{p}.proj", b * n, c, c, role="proj")


def biformer_block(t: Trace, p: str, b: Any, gh: Any, gw: Any, c: int, spec: BiFormerSpec, s: int) -> None:
    """x = x + dwconv(x);  x = x + attn(norm1(x));  x = x + mlp(norm2(x))  (mlp.0, GELU mlp.2, mlp.3)."""
    rows, x = b * gh * gw, b * gh * gw * c
    t.conv(f"{p}.pos_embed", b, c, c, gh, gw, kernel=POS_KERNEL, stride=1, pad=POS_KERNEL // 2, groups=c,
           role="embed")
    t.eltwise(p, x)
    t.norm(f"{p}.norm1", rows, c)
    attention = routing_attention if spec.topks[s] else global_attention
    attention(t, f"{p}.attn", b, gh, gw, c, spec, s)
    t.eltwise(p, x)  # residual
    t.note("branch_copied")  # the attention's output reaches it through the region reverse (and crop)
    hidden = int(c * spec.mlp_ratio)
    t.norm(f"{p}.norm2", rows, c)
    t.linear(f"{p}.mlp.0", rows, c, hidden, role="mlp")
    t.gelu(f"{p}.mlp.2", rows * hidden)
    t.linear(f"{p}.mlp.3", rows, hidden, c, role="mlp")
    t.eltwise(p, x)  # residual


def _check_regions(spec: BiFormerSpec, h: Any, w: Any, grids: list[tuple[Any, Any]]) -> None:
    """A routing stage needs at least n_win tokens a side: a smaller grid cannot hold S x S regions."""
    for s, (gh, gw) in enumerate(grids):
        if spec.topks[s] and isinstance(gh, int) and isinstance(gw, int) and min(gh, gw) < spec.n_win:
            least = (spec.n_win - 1) * STEM_STRIDE * 2**s + 1
            raise SpecError(f"a {h}x{w} input gives BiFormer stage {s} a {gh}x{gw} grid, which cannot hold "
                            f"{spec.n_win}x{spec.n_win} regions (n_win): use at least {least}x{least}.")


def biformer_trace(spec: BiFormerSpec, h: Any, w: Any, b: Any) -> Trace:
    grids = stage_grids(spec, h, w)
    _check_regions(spec, h, w, grids)
    t = Trace(b)
    c = spec.dims[0]
    gh, gw = t.conv("downsample_layers.0.0", b, spec.in_chans, c // 2, h, w, kernel=3, stride=2, pad=1,
                    role="embed")
    t.batch_norm("downsample_layers.0.1", b * c // 2 * gh * gw, c // 2, role="embed")
    t.gelu("downsample_layers.0.2", b * c // 2 * gh * gw, role="embed")
    gh, gw = t.conv("downsample_layers.0.3", b, c // 2, c, gh, gw, kernel=3, stride=2, pad=1, role="embed")
    t.batch_norm("downsample_layers.0.4", b * c * gh * gw, c, role="embed")
    for s, (dim, depth) in enumerate(zip(spec.dims, spec.depths)):
        if s:
            gh, gw = t.conv(f"downsample_layers.{s}.0", b, c, dim, gh, gw, kernel=3, stride=2, pad=1, role="pool")
            t.batch_norm(f"downsample_layers.{s}.1", b * dim * gh * gw, dim, role="pool")
            c = dim
        for i in range(depth):
            with t.block(f"stages.{s}.{i}", f"stages.{s}", b * gh * gw * c):
                biformer_block(t, f"stages.{s}.{i}", b, gh, gw, c, spec, s)
    t.batch_norm("norm", b * c * gh * gw, c, role="head")
    t.eltwise("", b * c, kind="pool", inp=b * gh * gw * c)  # mean over the grid
    t.linear("head", b, c, spec.num_classes, role="head")
    return t


def grid(spec: BiFormerSpec, h: Any, w: Any) -> tuple[Any, Any]:
    """The stem's output grid: two 3x3 stride-2 convs with padding 1, ceil(ceil(h/2)/2)."""
    return stage_grids(spec, h, w)[0]


def lattice(spec: BiFormerSpec) -> tuple[int, int]:
    """Every stage's grid an exact halving, and every routing stage's grid a multiple of n_win (no
    padding): stage s has R / (4 * 2^s) tokens a side, so R is a multiple of 4 * 2^(stages-1) and of
    4 * 2^s * n_win for the last routing stage s."""
    import math

    last = max((s for s, k in enumerate(spec.topks) if k), default=-1)
    step = STEM_STRIDE * 2 ** (len(spec.dims) - 1)
    if last >= 0:
        step = math.lcm(step, STEM_STRIDE * 2**last * spec.n_win)
    return step, STEM_STRIDE


def complexity(spec: BiFormerSpec) -> str:
    if any(spec.topks):
        return "O((HW)²·kC/S²)"  # S = n_win fixed: k of S^2 regions attended, each with HW/S^2 tokens
    return "O((HW)²C)"  # global attention in every stage


# ---------------------------------------------------------------------------------------------
# Memory: nets.biformer.Block


def routing_memory(c: Call) -> Attend:
    """nets.biformer.BiLevelRoutingAttention, every op of it: its locals live to its return: the padded grid
    (when padded); qkv (the region layout, a copy, dies when qkv returns); the region means; the LCE conv's
    output (v's NCHW copy dies when the conv returns); the int64 top-k indices (the affinity, its scaled
    queries and the top-k values die inside the router); the gathered keys and values. Then the attention
    (`liveness.core_attention` on the math path's batched products, which copy the head-split views when
    B' > 1 and heads > 1), the output laid back out on the grid (a copy), + LCE and wo with that copy still
    bound, and the crop (a copy) when padded. Returns the steps and the output (wo's, or the crop's)."""
    op, e = c.op, c.e
    a = op.call
    ops = {(o.path, o.kind): o for o in c.block}
    x = ops[(f"{op.block.prefix}.norm1", "layer_norm")].out
    qkv = ops[(f"{op.path}.qkv.qkv", "linear")].out
    grid = qkv // 3  # the padded grid's elements
    pad = grid if grid != x else 0
    means, index = ops[(op.path, "pool")].out, ops[(f"{op.path}.router", "topk")].out
    affinity, lepe = ops[(f"{op.path}.router", "matmul")].out, ops[(f"{op.path}.lepe", "conv")].out
    live = pad * e
    steps = [Step("qkv", live + (grid + qkv) * e)]
    live += (qkv + 2 * means) * e
    steps.append(Step("lepe", live + (grid + lepe) * e))
    live += lepe * e
    steps += [Step("router", live + (means + affinity) * e),
              Step("router topk", live + affinity * e + index * (e + INT64))]
    live += index * INT64 + ops[(f"{op.path}.kv_gather", "gather")].out * e
    steps.append(Step("kv_gather", live))
    q, s = a.q * e, a.scores * e
    if c.fused:
        steps.append(Step("fused attention", live + q + a.rows * LSE_BYTES))
    else:
        cq, ckv = (q, a.kv * e) if a.batch > 1 and a.heads > 1 else (0, 0)
        steps += [Step("q @ k^T", live + q + cq + ckv + s), Step("softmax", live + 2 * s),
                  Step("scores @ v", live + 2 * s + ckv + q)]
    wo = ops[(f"{op.path}.wo", "linear")].out
    steps += [Step("region reverse", live + q + grid * e), Step("+ lepe", live + 2 * grid * e),
              Step("wo", live + (2 * grid + wo) * e)]
    if pad:
        steps.append(Step("crop", live + (wo + x) * e))
    return Attend(steps, 0, x * e)


def global_memory(c: Call) -> Attend:
    """nets.biformer.AttentionLePE's call, on top of qkv and the LePE conv's output (bound to the return): the
    attention core (`liveness.core_attention`; the math path's batched products copy the head-split views
    when B' > 1 and heads > 1); the heads merged (a copy on the math path, a view of the fused kernel's
    output)."""
    a, e = c.op.call, c.e
    q, s = a.q * e, a.scores * e
    if c.fused:
        return Attend([Step("fused attention", q + a.rows * LSE_BYTES)], 0, q)
    cq, ckv = (q, a.kv * e) if a.batch > 1 and a.heads > 1 else (0, 0)
    return Attend([Step("q @ k^T", q + cq + ckv + s), Step("softmax", 2 * s), Step("scores @ v", 2 * s + ckv + q),
                   Step("merge heads", 2 * q)], 0, q)


ATTENTION = {"biformer_routing": routing_memory, "biformer_global": global_memory}  # the engine's (`liveness`)


trace = biformer_trace  # the registry reads every family module's `trace`
