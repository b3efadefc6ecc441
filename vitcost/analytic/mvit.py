"""MViTv2 walker (Li et al. 2022), conv pooling, expand-in-attention; on images and on clips (`specs.MViTSpec`).

Per block with input grid t x h x w (an image: t = 1) of width D_in, output width D, heads n, head width d = D/n,
and N = c + t*h*w tokens (c = 1 with a class token, else 0):
  qkv:      N * D_in * 3D
  pooling:  Q, K, V each: depthwise kt x k x k conv on [n, d, t, h, w] (stride s_q for Q, s_kv for K/V; the
            class token set aside and put back in front), then LayerNorm over d
            -> Nq = c + tq*hq*wq queries, Nk = c + tk*hk*wk keys
  scores:   n * Nq * Nk * d (QK^T) + n * (Nq - c) * (hk + wk [+ tk]) * d (decomposed relative positions,
            the temporal table on a clip) + n * Nq * Nk * d (AV); residual pooling adds Q to the output
  proj:     Nq * D^2,  MLP: 2 * r * Nq * D^2
  shortcut: a linear D_in -> D when the width changes, max-pooled with the Q stride.
A window block (hybrid window attention, MViTv2 Sec. 4; `window_attention`; images only) splits the pooled
grids, zero-padded, into windows of M_q x M_q queries and M_kv x M_kv keys; with W windows per image:
  scores:   n * W * M_q^2 * M_kv^2 * d (QK^T) + n * W * M_q^2 * 2*M_kv * d (relative positions)
            + n * W * M_q^2 * M_kv^2 * d (AV); residual pooling adds Q after the windows are merged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vitcost.analytic.cost import AttnCall, Op
from vitcost.analytic.ints import ceil_div, conv_out, imax
from vitcost.analytic.liveness import (
    LSE_BYTES,
    Attend,
    Call,
    PeakSteps,
    Step,
    conv_scratch,
    conv_weight,
    flash_scratch,
    norm_stats,
)
from vitcost.analytic.mvit1 import Grid, pools, skip_kernel, volume
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import MViTSpec


def _pool(t: Trace, p: str, which: str, b: Any, heads: int, hd: int, grid: Grid, kernel: Grid, stride: Grid,
          qkv: str, cls: int) -> Grid:
    """Depthwise conv pooling shared across heads: [b*heads, hd, t, h, w] -> [b*heads, hd, to, ho, wo] (a class
    token set aside and concatenated back in front), then norm; the conv reads the op `qkv`'s output."""
    out = t.conv3d(f"{p}.pool_{which}", b * heads, hd, hd, grid, kernel=kernel, stride=stride,
                   pad=tuple(k // 2 for k in kernel), groups=hd, bias=False, role="pool")
    t.note(src=(qkv,), part=True)  # a contiguous copy of the head-split q, k or v; memory: `attention_memory`
    n = cls + volume(out)
    if cls:
        t.eltwise(f"{p}.pool_{which}", b * heads * n * hd, kind="concat", inp=b * heads * n * hd)
        t.note(part=True)
    t.norm(f"{p}.norm_{which}", b * heads * n, hd, role="pool")
    t.note(part=True)
    return out


def _shortcut_pool(t: Trace, p: str, b: Any, qg: Grid, stride: Grid, dim: int, short: Any, cls: int) -> None:
    """The shortcut max-pooled to the query grid (kernel s + 1 on a strided axis, a class token set aside and
    concatenated back), from `short` elements."""
    ks = skip_kernel(stride)
    pooled = b * volume(qg) * dim
    source = t.key()
    with t.scope("attention_pool"):  # its argument lives until it returns
        t.eltwise(f"{p}.shortcut_pool_attn", pooled * ks[0] * ks[1] * ks[2], kind="pool", inp=short, out=pooled)
        # of the shortcut's grid tokens transposed to a contiguous [B, D, t, h, w] copy, with int64 indices
        t.note("max_pool", src=("copy",), reads=(source,), temp=short - b * cls * dim, temp_index=pooled)
        if cls:
            n = b * (cls + volume(qg)) * dim
            t.eltwise(f"{p}.shortcut_pool_attn", n, kind="concat", inp=n)


def _attend(t: Trace, p: str, b: Any, heads: int, hd: int, qg: Grid, kg: Grid, spec: MViTSpec) -> None:
    """The relative-position tables (h, w, and t with `rel_pos_t`: 2 * max(q, k) - 1 rows each) and the
    attention record."""
    (qt, qh, qw), (kt, kh, kw) = qg, kg
    if spec.rel_pos:
        t.param(f"{p}.attn.rel_pos_h", (2 * imax(qh, kh) - 1) * hd)
        t.param(f"{p}.attn.rel_pos_w", (2 * imax(qw, kw) - 1) * hd)
    if spec.rel_pos_t:
        t.param(f"{p}.attn.rel_pos_t", (2 * imax(qt, kt) - 1) * hd)
    cls = int(spec.cls_token)
    t.attention(f"{p}.attn", b, heads, cls + volume(qg), cls + volume(kg), hd,
                rel=(qh, qw, kh, kw) if spec.rel_pos else (), residual=spec.residual_pooling,
                rel_t=(qt, kt) if spec.rel_pos_t else (), cls=cls)


def mvit_block(t: Trace, p: str, b: Any, grid: Grid, dim_in: int, dim: int, heads: int,
               strides: tuple[Grid, Grid], spec: MViTSpec, dim_out: int = 0, window: int = 0) -> Grid:
    """One block on a t x h x w grid: attention from dim_in to dim channels with (Q, K/V) pooling `strides`,
    MLP from dim to dim_out (default dim); a wider dim_out projects the residual from norm2's output
    (`shortcut_proj_mlp`); `window`: the window side on the block's input grid (`window_attention`; an
    image, t = 1), 0 for global attention."""
    dim_out = dim_out or dim
    cls = int(spec.cls_token)
    rows = b * (cls + volume(grid))
    hd, k = dim // heads, (spec.pool_kernel_t, spec.pool_kernel, spec.pool_kernel)
    q_stride, kv_stride = strides
    block_input = t.key()
    t.norm(f"{p}.norm1", rows, dim_in)
    norm1 = t.key()
    short = rows * dim_in
    shortcut = block_input  # x_shortcut: the block input, or its projection, pooled
    if dim_in != dim:
        t.linear(f"{p}.shortcut_proj_attn", rows, dim_in, dim, role="proj")
        short = rows * dim
        shortcut = t.key()
    t.linear(f"{p}.attn.qkv", rows, dim_in, 3 * dim, role="proj")
    t.note(src=(norm1,), keep=f"{p}.attn")  # past the shortcut projection; a local to the module's return
    qkv = t.key()
    pool_q, pool_kv = pools(k, q_stride, False), pools(k, kv_stride, False)
    qg = _pool(t, f"{p}.attn", "q", b, heads, hd, grid, k, q_stride, qkv, cls) if pool_q else grid
    kg = _pool(t, f"{p}.attn", "k", b, heads, hd, grid, k, kv_stride, qkv, cls) if pool_kv else grid
    if pool_kv:
        _pool(t, f"{p}.attn", "v", b, heads, hd, grid, k, kv_stride, qkv, cls)
    # q, k and v: the pooling norms' outputs where they pool, else views of qkv
    sources = [f"qkv={qkv}"] + [f"{which}={p}.attn.norm_{which}#layer_norm" for which, pooled
                                in (("q", pool_q), ("k", pool_kv), ("v", pool_kv)) if pooled]
    nq = cls + volume(qg)
    if max(q_stride) > 1:
        _shortcut_pool(t, p, b, qg, q_stride, dim, short, cls)
        shortcut = t.key()
    if window:
        window_attention(t, f"{p}.attn", b, heads, hd, (*qg[1:], *kg[1:]), window // q_stride[1],
                         window // kv_stride[1], spec, sources[1:])
    else:
        _attend(t, p, b, heads, hd, qg, kg, spec)
        t.note(src=tuple(sources), attend="mvit")
    t.linear(f"{p}.attn.proj", b * nq, dim, dim, role="proj")
    t.eltwise(p, b * nq * dim)  # residual: x_shortcut + attn(x_norm)
    t.note(reads=(shortcut,))
    hidden = int(dim * spec.mlp_ratio)
    t.norm(f"{p}.norm2", b * nq, dim)
    t.note(rebinds=(norm1, shortcut))  # x_norm = norm2(x); then x_shortcut is rebound
    if dim_out != dim:
        norm2 = t.key()
        t.linear(f"{p}.shortcut_proj_mlp", b * nq, dim, dim_out, role="proj")
        proj_mlp = t.key()
    t.linear(f"{p}.mlp.fc1", b * nq, dim, hidden, role="mlp")
    if dim_out != dim:
        t.note(src=(norm2,))  # past the shortcut projection
    t.gelu(f"{p}.mlp.act", b * nq * hidden)
    t.linear(f"{p}.mlp.fc2", b * nq, hidden, dim_out, role="mlp")
    t.eltwise(p, b * nq * dim_out)  # residual
    if dim_out != dim:
        t.note(reads=(proj_mlp,))
    return qg


def window_attention(t: Trace, p: str, b: Any, heads: int, hd: int, grids: tuple, mq: int, mk: int, spec: MViTSpec,
                     pooled: list[str]) -> None:
    """Pooling attention inside windows (detectron2's MViT backbone) on the pooled grids `grids` (qh, qw,
    kh, kw): the q grid, zero-padded to multiples of mq, in mq x mq windows, the k/v grid likewise in
    mk x mk windows (as many: each grid is its input over its stride, the window its input's window over
    the same stride); one attention call over the b * windows windows, whose relative-position tables
    span one window. The call names as producers those of the pooled q, k, v (`pooled`, "q=path#kind")
    whose windows are views of them (`window_view`); the others are new tensors. The output is merged
    back, cropped, and the pooled q added (residual pooling) on the unpadded grid."""
    qh, qw, kh, kw = grids
    windows = b * ceil_div(qh, mq) * ceil_div(qw, mq)
    rel: tuple = ()
    if spec.rel_pos:
        t.param(f"{p}.rel_pos_h", (2 * imax(mq, mk) - 1) * hd)
        t.param(f"{p}.rel_pos_w", (2 * imax(mq, mk) - 1) * hd)
        rel = (mq, mq, mk, mk)
    t.attention(p, windows, heads, mq * mq, mk * mk, hd, rel=rel)
    views = {"q": window_view(qh, qw, mq), "k": window_view(kh, kw, mk), "v": window_view(kh, kw, mk)}
    t.note(src=tuple(src for src in pooled if views[src[0]]), attend="mvit_window")
    if spec.residual_pooling:
        t.eltwise(p, b * heads * qh * qw * hd)  # + the pooled q
        t.note(part=True)


def window_view(h: Any, w: Any, m: int) -> bool:
    """Whether `nets.mvit.window_partition` of an h x w grid into m x m windows is a view: no padding, and
    a reorder that moves no data (windows of one token, or one window across the width)."""
    if not isinstance(h, int) or not isinstance(w, int):
        return False
    return h % m == 0 and w % m == 0 and (m == 1 or w == m)


def embed(t: Trace, spec: MViTSpec, h: Any, w: Any, b: Any, frames: Any) -> Grid:
    """The stem, a conv over [T, H, W] (an image: one frame, kernel 1 in T), and the class token; returns the
    token grid."""
    ts, k = spec.stem_stride_t, spec.stem_kernel
    if isinstance(frames, int) and frames % ts:  # an image has stride 1 in T (`MViTSpec.at_frames`)
        raise SpecError(f"MViTSpec.stem_stride_t {ts} does not divide the frames of a clip of {frames} frames: "
                        f"give T a multiple of {ts}.")
    if isinstance(h, int) and min(h, w) < k:
        raise SpecError(f"{h}x{w} is smaller than the {k}x{k} stem of MViTv2.")
    grid = t.conv3d("patch_embed.proj", b, spec.in_chans, spec.dims[0], (frames, h, w),
                    kernel=(spec.stem_kernel_t, k, k), stride=(ts, spec.stem_stride, spec.stem_stride),
                    pad=(spec.stem_padding_t, k // 2, k // 2), role="embed")
    if isinstance(frames, int) and grid[0] < 1:
        raise SpecError(f"{frames} frames are fewer than the {spec.stem_kernel_t}-frame stem of MViTv2.")
    if spec.cls_token:
        n = b * (1 + volume(grid)) * spec.dims[0]
        t.param("cls_token", spec.dims[0])
        t.eltwise("", n, kind="concat", inp=n)  # the class token in front
    return grid


def mvit_trace(spec: MViTSpec, h: Any, w: Any, b: Any, frames: Any = 1) -> Trace:
    """The forward on a clip [b, C, frames, h, w] (an image: frames = 1, the image model: `MViTSpec.at_frames`)."""
    spec = spec.at_frames(frames)
    if spec.window and frames != 1:
        raise SpecError(f"MViTSpec.window partitions an image (or one frame), not a clip of {frames} frames.")
    t = Trace(b)
    grid = embed(t, spec, h, w, b, frames)
    cls = int(spec.cls_token)
    dim_in = spec.dims[0]
    for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
        for i in range(depth):
            dim, dim_out = spec.block_dims(s, i, dim_in)
            with t.block(f"stages.{s}.blocks.{i}", f"stages.{s}", b * (cls + volume(grid)) * dim_in):
                grid = mvit_block(t, f"stages.{s}.blocks.{i}", b, grid, dim_in, dim, heads, spec.strides3(s, i),
                                  spec, dim_out, spec.block_window(s, i))
            dim_in = dim_out
    n = cls + volume(grid)
    t.norm("norm", b * n, dim_in)
    if not cls:
        t.eltwise("", b * dim_in, kind="pool", inp=b * n * dim_in)  # mean over tokens
    t.linear("head", b, dim_in, spec.num_classes, role="head")  # on the mean, or on the class token
    return t


def grid(spec: MViTSpec, h: Any, w: Any) -> tuple[Any, Any]:
    """The stem's output grid."""
    return (conv_out(h, spec.stem_kernel, spec.stem_stride, spec.stem_kernel // 2),
            conv_out(w, spec.stem_kernel, spec.stem_stride, spec.stem_kernel // 2))


def time_grid(spec: MViTSpec, frames: Any) -> Any:
    """The stem's temporal grid."""
    spec = spec.at_frames(frames)
    return conv_out(frames, spec.stem_kernel_t, spec.stem_stride_t, spec.stem_padding_t)


def lattice(spec: MViTSpec) -> tuple[int, int]:
    """Every pooled grid (Q and K/V strides) an exact division."""
    stride, worst = 1, 1
    for s in range(len(spec.depths)):
        stride *= spec.q_stride(s)
        worst = max(worst, stride * max(spec.block_kv_stride(s, i) for i in range(spec.depths[s])))
    if spec.window:  # and every stage's grid a whole number of its windows
        worst = math.lcm(worst, spec.window)
    return spec.stem_stride * worst, spec.stem_stride


def complexity(spec: MViTSpec) -> str:
    if spec.window and not spec.global_blocks:
        return "O(HWC)"  # fixed windows
    if spec.window:
        return "O(HWC) + O(R^4/s^2)"  # window blocks linear in the tokens, the global blocks all pairs
    return "O(R^4/s^2)"  # all pairs, keys pooled by stride s


def clip_complexity(spec: MViTSpec) -> str:
    return "O((T H W)^2/s^2)"  # all pairs of the t*h*w tokens, keys pooled by s


# ---------------------------------------------------------------------------------------------
# Memory: nets.mvit.MultiScaleAttention (`liveness`)


class _Block:
    """The ops of one block (path prefix `p`), looked up by path suffix and kind."""

    def __init__(self, prefix: str, ops: Sequence[Op]) -> None:
        self.p = prefix
        self._ops: dict[str, list[Op]] = {}
        for op in ops:
            self._ops.setdefault(op.path, []).append(op)

    def find(self, suffix: str, kind: str | None = None) -> Op | None:
        return next((op for op in self._ops.get(f"{self.p}.{suffix}" if suffix else self.p, ())
                     if kind is None or op.kind == kind), None)

    def out(self, suffix: str, kind: str | None = None) -> int:
        op = self.find(suffix, kind)
        return 0 if op is None else op.out

    def attention(self) -> AttnCall:
        return next(op.call for ops in self._ops.values() for op in ops if op.call is not None)


class _Steps(list):
    """The steps of one attention call, recorded as `PeakSteps.at` records them, bytes on top of what was alive
    before the call (its module's qkv included); `cpu` and `threads` decide the kernels' scratch."""

    def __init__(self, peak: PeakSteps, where: str) -> None:
        super().__init__()
        self.cpu, self.threads, self.where = peak.cpu, peak.threads, where

    def at(self, nbytes: int, name: str, scratch: int = 0) -> None:
        self.append(Step(name.removeprefix(self.where).strip(), nbytes, scratch))


def attention_memory(c: Call) -> Attend:
    """nets.mvit.MultiScaleAttention (timm's), global (`pooling_attention`) or in windows
    (`window_attention_memory`); the pooling of q, k and v and the residual pooling are part of it."""
    op = c.op
    blk = _Block(op.block.prefix, c.block)
    steps = _Steps(c.peak, op.path)
    if op.mem.attend == "mvit_window":
        kept, out = window_attention_memory(steps, blk, c.batch, c.e, c.fused)
    else:
        kept, out = pooling_attention(steps, blk, c.batch, c.e, c.fused)
    return Attend(steps, kept, out)


def pooling_attention(peak: _Steps, blk: _Block, b: int, e: int, fused: bool) -> tuple[int, int]:
    """nets.mvit.MultiScaleAttention (timm's), on top of qkv (referenced until the module returns). Each pooled
    q, k, v: the head-split view reshaped to [B*n, h, w, d] (a copy when B > 1 and n > 1) and permuted to a
    contiguous [B*n, d, h, w] copy, the conv, then LayerNorm over d of the conv output's transposed view; each
    step rebinds, so only the normed tensor remains. Then the scores of a temporary q * scale (the raw scores
    die at the softmax, the softmax output stays referenced), the relative positions added in place
    (`_timm_rel_pos`), scores @ v, + q, the head merge (a copy when n > 1). With a class token (a clip likewise
    over t x h x w) the pooling copies the grid tokens only and concatenates the class token back in front
    of the conv output (the norm then reads that contiguous tensor), and the residual pooling adds q in
    place. Returns the bytes kept until the module returns and the output's."""
    a = blk.attention()
    split = b > 1 and a.heads > 1
    p = f"{blk.p}.attn"
    base = _pooled_qkv(peak, blk, 0, split, e) * e  # the normed q, k, v; unpooled ones are views of qkv
    q, s = a.q * e, a.scores * e
    rel = a.scores * e if a.rel else 0
    if fused:  # the relative positions summed into a zero [B, n, Nq, Nk] term, passed as attn_mask
        if a.rel:
            _timm_rel_pos(peak, p, base + s, a, e)
        peak.at(base + rel + q + a.rows * LSE_BYTES, f"{p} fused attention", flash_scratch(peak, a, e))
        o = q
    else:
        unpooled = blk.find("attn.norm_q") is None
        cq, ckv = (q, a.kv * e) if split and unpooled else (0, 0)
        peak.at(base + q + cq + ckv + s, f"{p} q @ k^T")  # the temporary q * scale
        if a.rel:
            _timm_rel_pos(peak, p, base + s, a, e)
        peak.at(base + 2 * s, f"{p} softmax")
        peak.at(base + s + ckv + q, f"{p} scores @ v")
        base += s  # the softmax output, referenced until the module returns
        o = q
    r = q if a.residual and not a.cls else 0  # with a class token: in place
    if r:
        peak.at(base + o + r, f"{p} residual pooling")
    x = r or o
    merge = q if a.heads > 1 and (r or not fused) else 0  # a fused kernel's own output is laid out [B, N, h, d]
    if merge:
        peak.at(base + x + merge, f"{p} merge heads")
    return base, q


def _pooled_qkv(peak: _Steps, blk: _Block, base: int, split: bool, e: int) -> int:
    """The pooling of q, k and v in turn (see `pooling_attention`), `base` bytes alive; returns the elements
    of the normed q, k, v that stay referenced."""
    a = blk.attention()
    p = f"{blk.p}.attn"
    full = blk.out("attn.qkv") // 3 - a.batch * a.heads * a.cls * a.head_dim  # one of q, k, v without its class token
    pooled = 0
    for which in ("q", "k", "v"):
        conv = blk.find(f"attn.pool_{which}", "conv")
        if conv is None:
            continue
        c = conv.out
        peak.at(base + (pooled + (2 * full if split else full)) * e, f"{p} {which} to [B*n, d, h, w]")
        scratch = conv_scratch(peak, "depthwise", full, c, conv_weight(conv), e)
        peak.at(base + (pooled + full + c) * e, f"{p}.pool_{which}", scratch)
        cat = blk.out(f"attn.pool_{which}", "concat")
        if cat:
            peak.at(base + (pooled + c + cat) * e, f"{p} {which} concat")
            peak.at(base + (pooled + 2 * cat) * e + norm_stats(blk.find(f"attn.norm_{which}")), f"{p}.norm_{which}")
        else:
            peak.at(base + (pooled + 2 * c) * e, f"{p}.norm_{which}", c * e)  # norm reads a strided view: a copy
        pooled += cat or c
    return pooled


def window_attention_memory(peak: _Steps, blk: _Block, b: int, e: int, fused: bool) -> tuple[int, int]:
    """nets.mvit.MultiScaleAttention with windows, on top of qkv, after the pooling of q, k, v
    (`_pooled_qkv`): each of q, k, v in turn partitioned, rebinding its name, so that the pooled k and v die
    where their windows are new tensors. A partition the walker names a view (`window_view`) allocates
    nothing; otherwise a padded grid is a new tensor, and the reorder into windows a copy unless it is a
    view, which is taken to be so when there is one window or the windows are 1 x 1 (exact for square
    grids). Then the attention of the global case over the windows (contiguous: no copies for the matmuls),
    merging the windows back while the attention output is referenced (the reverse reorder's copy, the
    crop's), the pooled q added and the head merge. The windows of q, k and v, and on the math path the
    softmax output, stay referenced to the end. Returns the bytes kept until the module returns and the
    output's."""
    a = blk.attention()
    p = f"{blk.p}.attn"
    base = _pooled_qkv(peak, blk, 0, b > 1 and a.heads > 1, e) * e
    op = blk.find("attn", "attention")
    named = {src[0] for src in op.src}
    pooled_q, pooled_kv = blk.out("attn.norm_q") or a.q, blk.out("attn.norm_k") or a.kv
    nw = a.batch // b
    reorder = {"q": nw > 1 and a.nq > 1, "k": nw > 1 and a.nkv > 1}

    def partition(which: str, windows: int, grid: int) -> int:
        if which in named:
            return 0
        pad = windows if windows != grid else 0
        copy = windows if reorder[which[0] if which == "q" else "k"] or not pad else 0
        peak.at(base + (pad + copy) * e, f"{p} {which} window partition")
        return windows

    base += partition("q", a.q, pooled_q) * e
    for which in ("k", "v"):
        new = partition(which, a.kv, pooled_kv)
        base += (new - (pooled_kv if new and blk.find("attn.norm_k") else 0)) * e  # the pooled k or v dies
    q, s = a.q * e, a.scores * e
    if fused:
        if a.rel:
            _timm_rel_pos(peak, p, base + s, a, e)
        peak.at(base + (s if a.rel else 0) + q + a.rows * LSE_BYTES, f"{p} fused attention", flash_scratch(peak, a, e))
    else:
        peak.at(base + 2 * q + s, f"{p} q @ k^T")  # the temporary q * scale
        if a.rel:
            _timm_rel_pos(peak, p, base + s, a, e)
        peak.at(base + 2 * s, f"{p} softmax")
        peak.at(base + s + q, f"{p} scores @ v")
        base += s  # the softmax output, referenced until the module returns
    x = pooled_q * e
    if "q" not in named:  # the reverse reorder's copy (or the padded grid, reordered), then the crop
        reverse = q if reorder["q"] or a.q == pooled_q else 0
        peak.at(base + q + reverse + (x if a.q != pooled_q else 0), f"{p} window merge")
    if blk.find("attn", "add") is not None:  # residual pooling
        peak.at(base + 2 * x, f"{p} residual pooling")
    merge = x if a.heads > 1 else 0
    if merge:
        peak.at(base + x + merge, f"{p} merge heads")
    return base, x


def _timm_rel_pos(peak: _Steps, where: str, base: int, a: AttnCall, e: int) -> None:
    """nets.mvit MultiScaleAttention._add_rel_pos (timm's cal_rel_pos_type; on a clip SlowFast's third,
    temporal table), `base` bytes alive with the scores: gather R_h [qh, kh, d] and R_w [qw, kw, d] (and
    R_t [qt, kt, d]); per axis rel = einsum(q, R), which reads q's grid tokens with that axis first (a copy
    unless that is a view, `AttnCall.rel_operand_copied`; rebinding frees the table); then the scores' grid
    part + rel_h (a score-sized temporary) + rel_w (a second one) (+ rel_t), copied into the scores in place."""
    qh, qw, kh, kw = a.rel
    d, rows = a.head_dim, a.grid_rows
    axes = [("h", 1, qh, kh), ("w", 2, qw, kw)] + ([("t", 0, *a.rel_t)] if a.rel_t else [])
    tables = [q * k * d for _, _, q, k in axes]
    outs: list[int] = []
    for j, (name, axis, _, k) in enumerate(axes):
        copy = rows * d if a.rel_operand_copied(axis) else 0
        peak.at(base + (sum(tables[j:]) + sum(outs) + copy + rows * k) * e, f"{where} rel_pos {name}")
        outs.append(rows * k)
    peak.at(base + (sum(outs) + 2 * a.grid_scores) * e, f"{where} + rel_pos")


ATTENTION = {"mvit": attention_memory, "mvit_window": attention_memory}  # the engine's programs (`liveness`)


trace = mvit_trace  # the registry reads every family module's `trace`
