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

from vitcost.analytic.cost import AttnCall
from vitcost.analytic.ints import ceil_div, floor_div
from vitcost.analytic.peaks import LSE_BYTES, Block, PeakSteps, mlp
from vitcost.analytic.swin import window_and_shift
from vitcost.analytic.trace import Trace
from vitcost.analytic.transformer import padded
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
    t.param(f"{p}.q_bias", dim)
    t.param(f"{p}.v_bias", dim)
    t.eltwise(p, rows * 3 * dim, kind="bias", role="proj")  # + cat(q_bias, 0, v_bias)
    t.param(f"{p}.logit_scale", heads)
    qk = 2 * windows * heads * n * d  # q and k: [B', h, N, d] each
    t.eltwise(p, NORMALIZE_STEPS * qk, kind="normalize", role="scores", inp=qk, out=qk)
    # continuous position bias: [T, 2] -> [T, hidden] -> [T, heads], then gathered to [h, N, N]
    t.linear(f"{p}.cpb_mlp.0", table, 2, cpb_hidden, role="other")
    t.eltwise(f"{p}.cpb_mlp.1", table * cpb_hidden, kind="relu", inp=table * cpb_hidden)
    t.linear(f"{p}.cpb_mlp.2", table, cpb_hidden, heads, role="other", bias=False)
    gathered = heads * n * n
    t.eltwise(p, (1 + BIAS_SCALE_STEPS) * gathered, kind="bias_gather", inp=table * heads, out=gathered)
    # the attention's scale step is the logit scale applied to normalize(q); terms: bias (+ shift mask)
    t.attention(p, windows, heads, n, n, d, terms=2 if masked else 1)
    t.linear(f"{p}.proj", rows, dim, dim, role="proj")


def swinv2_block(t: Trace, p: str, b: Any, gh: Any, gw: Any, dim: int, heads: int, hidden: int, wh: int, ww: int,
                 cpb_hidden: int, *, masked: bool) -> None:
    """One res-post-norm block of width `dim` on a gh x gw grid attending in wh x ww windows."""
    hp, wp = padded(gh, wh), padded(gw, ww)
    windows = b * ceil_div(gh, wh) * ceil_div(gw, ww)
    rows = b * gh * gw
    cosine_window_attention(t, f"{p}.attn", windows, b * hp * wp, dim, heads, wh, ww, cpb_hidden, masked=masked)
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
            t.linear(f"layers.{s}.downsample.reduction", b * gh * gw, 4 * c, 2 * c, role="pool", bias=False)
            c *= 2
            t.norm(f"layers.{s}.downsample.norm", b * gh * gw, c, role="pool")
        (wh, sh), (ww, sw) = window_and_shift(gh, spec.window), window_and_shift(gw, spec.window)
        for i in range(depth):
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


def cosine_attend_steps(peak: PeakSteps, where: str, base: int, a: AttnCall, e: int, *, fused: bool, split: bool,
                        terms: int) -> int:
    """Steps inside nets.swinv2.cosine_attend, `base` bytes alive (normalised q and k included: the scale
    is already applied, so unlike `peaks.attend` no scaled copy of q is made), `terms` bytes of additive
    terms alive during it. `split`: q, k and v have a head-split layout that torch.matmul copies to a
    contiguous buffer. Returns the output bytes."""
    if fused:
        peak.at(base + terms + a.q * e + a.rows * LSE_BYTES, f"{where} fused attention")
        return a.q * e
    q, kv, s = a.q * e, a.kv * e, a.scores * e
    copies = (q, kv) if split else (0, 0)
    peak.at(base + terms + sum(copies) + s, f"{where} q @ k^T")
    peak.at(base + terms + 2 * s, f"{where} softmax")  # raw scores (+ each term) and their softmax
    peak.at(base + terms + 2 * s + copies[1] + q, f"{where} scores @ v")
    return q


def block_memory(peak: PeakSteps, blk: Block, spec: SwinV2Spec, b: int, e: int, fused: bool, outer: int) -> None:
    """nets.swinv2.SwinV2Block: y = roll(x) -> pad -> partition -> cosine window attention -> reverse ->
    crop -> roll back; x = x + norm1(y); x = x + norm2(mlp(x)). The block input and the padded grid
    stay alive through the attention (the partitioned copy too, unless a window spans the grid); inside
    it qkv (kept by the v view), normalize(q) * scale and normalize(k), then the [1, h, N, N] position
    bias; the CPB MLP's hidden layer [T, 512] and the three [N, N, h] steps of the gather, sigmoid and
    scale are transient. Shifted blocks on the fused path fold the windows into the heads as
    `swin.window_block_memory` describes (copies of q, k and v when nW > 1 and h > 1, which frees qkv
    and the normalised q and k; the bias + mask sum and its reshape copy). The rolled-back y stays
    alive through the MLP, whose input is x itself (post-norm)."""
    x = blk.out("norm1")
    a = blk.attention()
    heads, tokens, windows = a.heads, a.nq, a.batch
    qkv = blk.out("attn.qkv")
    xp = qkv // 3  # the padded grid: qkv runs on every padded token
    shifted = a.terms == 2
    per_image = windows // b
    partition_copy = 0 if per_image == 1 else xp  # window_partition is a view when a window spans the grid
    bias = heads * tokens * tokens * e
    peak.at(outer + (x + (x if shifted else 0) + xp) * e, f"{blk.p} roll + pad")
    grid = outer + (x + xp + partition_copy) * e  # block input, padded grid, its partition
    peak.at(grid + (qkv + 2 * a.q) * e, f"{blk.p}.attn normalize")
    base = grid + (qkv + 2 * a.q) * e  # + qkv, normalize(q) * scale, normalize(k)
    table = blk.out("attn.cpb_mlp.2")  # [T, heads]
    peak.at(base + (blk.out("attn.cpb_mlp.0") + table) * e, f"{blk.p}.attn.cpb_mlp")
    peak.at(base + table * e + 3 * bias, f"{blk.p}.attn position bias")
    if fused and shifted:
        fold = per_image > 1 and heads > 1
        mask = per_image * heads * tokens * tokens * e
        if fold:
            peak.at(base + bias + 3 * a.q * e, f"{blk.p}.attn fold windows into heads")
            base = grid + 3 * a.q * e
        peak.at(base + bias + (2 if heads > 1 else 1) * mask, f"{blk.p}.attn bias + mask")
        terms = bias + mask
    else:
        terms = bias
    split = windows > 1 and heads > 1 and not (fused and shifted)
    o = cosine_attend_steps(peak, f"{blk.p}.attn", base, a, e, fused=fused, split=split, terms=terms)
    # merging heads copies the [B', h, N, d] output, except a fused kernel's own, laid out [B', N, h, d]
    merge = o if heads > 1 and not (fused and not shifted) else 0
    peak.at(base + terms + o + merge + blk.out("attn.proj") * e, f"{blk.p} attn.proj")
    # x + norm1(y): the caller's x, the rolled-back y and the new x stay alive through the MLP
    mlp(peak, blk.p, outer + 3 * x * e, 0, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)


trace = swinv2_trace  # the registry reads every family module's `trace`
