"""Swin Transformer V2 walker (Liu et al. 2022, "Swin Transformer V2: Scaling Up Capacity and Resolution")
and the memory of its blocks.

The stages, windows and shifts are Swin's (`analytic/swin.py`); what changes, per block of width C with
h heads on a gh x gw grid zero-padded to hp x wp, windows of M x M = N tokens:
  res-post-norm     x = x + norm1(attn(x));  x = x + norm2(mlp(x))            (Sec. 3.2)
                    the norms run on the attention / MLP output, on the unpadded grid
  cosine attention  scores = normalize(q) normalize(k)^T * exp(min(s, log 100)), a learned s per head
                    (Sec. 3.2): the same 2 hp wp N C MACs as dot-product attention
  log-spaced CPB    the relative position bias comes from a two-layer MLP, Linear(2, 512) -> ReLU ->
                    Linear(512, h, no bias), over the T = (2M_h - 1)(2M_w - 1) log-spaced relative
                    coordinates (Sec. 3.3), gathered to [h, N, N] and squashed by 16 * sigmoid. It runs
                    on every forward, once per block whatever the batch:  T*2*512 + T*512*h  MACs
  q and v biases    qkv has no bias of its own; a learned q bias, a zero k bias and a learned v bias
                    are added to its output (2C parameters where Swin V1 has 3C)
  patch merging     2x2 concat (4C) -> Linear(4C, 2C, no bias) -> LayerNorm(2C): the norm after the
                    reduction, over 2C

Per block, in MACs (the Swin paper's Eq. 2 plus the MLP of hidden width r*C and the CPB MLP):
    4 hp wp C^2 + 2 hp wp N C + 2 r gh gw C^2 + T * 512 * (2 + h)

Padding and shift follow timm's SwinTransformerV2Block: the grid is rolled by -(M//2) first, then
zero-padded at the bottom/right to multiples of the window, attended (qkv, scores and proj on the padded
grid), cropped and rolled back; the shift mask is built for the padded grid. On an axis whose grid is no
larger than the window the window becomes the grid and the shift 0 (`swin.window_and_shift`), in every
stage including the first.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import ceil_div, floor_div
from vitcost.analytic.liveness import LSE_BYTES, Attend, Call, Step, flash_scratch
from vitcost.analytic.swin import patch_merging, window_and_shift
from vitcost.analytic.trace import Trace
from vitcost.analytic.transformer import padded, swin_window_pass
from vitcost.errors import SpecError
from vitcost.specs import SwinV2Spec

BIAS_SCALE_STEPS = 2  # 16 * sigmoid(bias): a sigmoid and a scale per bias element
NORMALIZE_STEPS = 2  # F.normalize: a sum of squares and a divide per element


def cpb_table(wh: int, ww: int) -> int:
    """Rows T of the relative-coordinate table of a wh x ww window: (2wh - 1)(2ww - 1)."""
    return (2 * wh - 1) * (2 * ww - 1)


def cosine_window_attention(t: Trace, p: str, windows: Any, rows: Any, dim: int, heads: int, wh: int, ww: int,
                            cpb_hidden: int, *, masked: bool) -> None:
    """The ops of one WindowAttention (path `p`) over `windows` windows of wh x ww tokens, `rows` tokens
    in all (the padded grid, batch included)."""
    n, table = wh * ww, cpb_table(wh, ww)
    d = dim // heads
    t.linear(f"{p}.qkv", rows, dim, 3 * dim, role="proj", bias=False)
    t.note(keep=p)  # timm's qkv, referenced until the module returns
    qkv = t.key()
    t.param(f"{p}.q_bias", dim)
    t.param(f"{p}.v_bias", dim)
    t.eltwise(p, rows * 3 * dim, kind="bias", role="proj")  # + cat(q_bias, 0, v_bias)
    t.note(inplace=True)  # one F.linear with that bias: the same tensor
    t.param(f"{p}.logit_scale", heads)
    qk = 2 * windows * heads * n * d  # q and k: [B', h, N, d] each
    # normalize(q), normalize(k) and the position-bias MLP are the attention's in memory (`attention_memory`):
    # the math path runs the MLP after q k^T
    t.eltwise(p, NORMALIZE_STEPS * qk, kind="normalize", role="scores", inp=qk, out=qk)
    t.note(part=True)
    # continuous position bias: [T, 2] -> [T, hidden] -> [T, heads], then gathered to [h, N, N]
    t.linear(f"{p}.cpb_mlp.0", table, 2, cpb_hidden, role="other")
    t.note("reads_constant", part=True)  # the fixed table of log-spaced relative coordinates
    t.eltwise(f"{p}.cpb_mlp.1", table * cpb_hidden, kind="relu", inp=table * cpb_hidden)
    t.note(part=True)
    t.linear(f"{p}.cpb_mlp.2", table, cpb_hidden, heads, role="other", bias=False)
    t.note(part=True)
    gathered = heads * n * n
    t.eltwise(p, (1 + BIAS_SCALE_STEPS) * gathered, kind="bias_gather", inp=table * heads, out=gathered)
    t.note(part=True)
    # the attention's scale step is the logit scale applied to normalize(q); terms: bias (+ shift mask)
    t.attention(p, windows, heads, n, n, d, terms=2 if masked else 1)
    # the bias comes out of the (autocast 16-bit) CPB MLP; the shift mask is a float32 buffer
    t.note("cosine", *(("f32_terms",) if masked else ()), src=(f"qkv={qkv}",), attend="swinv2",
           extra=(table * cpb_hidden, table * heads))
    t.linear(f"{p}.proj", rows, dim, dim, role="proj")


def swinv2_block(t: Trace, p: str, b: Any, gh: Any, gw: Any, dim: int, heads: int, hidden: int, wh: int, ww: int,
                 cpb_hidden: int, *, masked: bool) -> None:
    """One res-post-norm block of width `dim` on a gh x gw grid attending in wh x ww windows."""
    hp, wp = padded(gh, wh), padded(gw, ww)
    windows = b * ceil_div(gh, wh) * ceil_div(gw, ww)
    rows = b * gh * gw
    view = isinstance(windows, int) and windows == b  # one window spans the grid: partition and reverse are views
    swin_window_pass(t, p, rows * dim, b * hp * wp * dim, view, masked, lambda: cosine_window_attention(
        t, f"{p}.attn", windows, b * hp * wp, dim, heads, wh, ww, cpb_hidden, masked=masked))
    t.norm(f"{p}.norm1", rows, dim)
    t.eltwise(p, rows * dim)  # residual
    t.linear(f"{p}.mlp.fc1", rows, dim, hidden, role="mlp")
    t.gelu(f"{p}.mlp.act", rows * hidden)
    t.linear(f"{p}.mlp.fc2", rows, hidden, dim, role="mlp")
    t.norm(f"{p}.norm2", rows, dim)
    t.eltwise(p, rows * dim)  # residual


def swinv2_trace(spec: SwinV2Spec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    c = spec.embed_dim
    gh, gw = t.conv("patch_embed.proj", b, spec.in_chans, c, h, w, kernel=spec.patch, stride=spec.patch,
                    pad=0, role="embed")
    if isinstance(gh, int) and (gh < 1 or gw < 1):
        raise SpecError(f"a {h}x{w} input is smaller than one {spec.patch}x{spec.patch} patch.")
    t.norm("patch_embed.norm", b * gh * gw, c)
    for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
        if s:
            gh, gw = ceil_div(gh, 2), ceil_div(gw, 2)  # odd grids are padded to even
            patch_merging(t, f"layers.{s}.downsample", b * gh * gw * 4 * c)
            t.linear(f"layers.{s}.downsample.reduction", b * gh * gw, 4 * c, 2 * c, role="pool", bias=False)
            c *= 2
            t.norm(f"layers.{s}.downsample.norm", b * gh * gw, c, role="pool")
        (wh, sh), (ww, sw) = window_and_shift(gh, spec.window), window_and_shift(gw, spec.window)
        for i in range(depth):
            with t.block(f"layers.{s}.blocks.{i}", f"layers.{s}", b * gh * gw * c):
                swinv2_block(t, f"layers.{s}.blocks.{i}", b, gh, gw, c, heads, int(c * spec.mlp_ratio), wh, ww,
                             spec.cpb_hidden, masked=i % 2 == 1 and bool(sh or sw))
    t.norm("norm", b * gh * gw, c)
    t.eltwise("head", b * c, kind="pool", inp=b * gh * gw * c)  # global average pool
    t.linear("head.fc", b, c, spec.num_classes, role="head")
    return t


def grid(spec: SwinV2Spec, h: Any, w: Any) -> tuple[Any, Any]:
    return floor_div(h, spec.patch), floor_div(w, spec.patch)


def lattice(spec: SwinV2Spec) -> tuple[int, int]:
    """Every stage's grid a multiple of the window: no padding anywhere."""
    return spec.patch * 2 ** (len(spec.depths) - 1) * spec.window, spec.patch


def complexity(spec: SwinV2Spec) -> str:
    return "O(HWC)"  # fixed M x M windows: 2 * M^2 * HW * C; the CPB MLP does not grow with the grid


# ---------------------------------------------------------------------------------------------
# Memory


def attention_memory(c: Call) -> Attend:
    """nets.swinv2.WindowAttention (timm's): qkv referenced until the module returns, and exp(logit scale)
    [h, 1, 1]. Math (timm's order): the scores of the temporaries normalize(q) * scale and normalize(k)
    (copied for the batched matmul when B' > 1 and h > 1); the CPB MLP ([T, 512], then the [T, h] table;
    `Mem.extra`) and the bias (gathered [N, N, h], a contiguous [h, N, N] copy, its sigmoid and the scaled
    sigmoid), which stays referenced with the table; the bias added, in shifted blocks the mask too; the
    softmax output stays referenced through scores @ v, the head merge and proj. sdpa: normalize(q) * scale
    and normalize(k) are kept; the bias (plus in shifted blocks the mask expanded to [B*nW, h, N, N], a copy
    for more than one image) is the attn_mask, kept too."""
    a, e, fused, batch = c.op.call, c.e, c.fused, c.batch
    q, s, kv = a.q * e, a.scores * e, a.kv * e
    bias = a.heads * a.nq * a.nkv * e
    hidden, table = (n * e for n in c.op.mem.extra)
    scale = a.heads * e  # exp(logit scale)
    if fused:
        kept = scale + 2 * q
        steps = [Step("cpb_mlp", kept + hidden + table), Step("position bias", kept + table + 3 * bias)]
        terms = bias
        if a.terms == 2:
            steps.append(Step("bias + mask", kept + bias + (2 * s if batch > 1 else s)))
            terms = s
        kept += terms
        steps.append(Step("fused attention", kept + q + a.rows * LSE_BYTES, flash_scratch(c.peak, a, e)))
        return Attend(steps, kept, q)
    cq, ckv = (q, kv) if a.batch > 1 and a.heads > 1 else (0, 0)
    merge = q if a.heads > 1 else 0
    kept = scale + bias + s
    return Attend([Step("normalize(q) * scale", scale + 2 * q), Step("q @ k^T", scale + 2 * q + cq + ckv + s),
                   Step("cpb_mlp", scale + s + hidden + table), Step("position bias", scale + s + table + 3 * bias),
                   Step("+ bias", kept + s), Step("scores @ v", kept + ckv + q), Step("merge heads", kept + q + merge)],
                  kept, q)


ATTENTION = {"swinv2": attention_memory}  # the engine's programs of this family's attention modules

trace = swinv2_trace  # the registry reads every family module's `trace`
