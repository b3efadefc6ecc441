"""MViT v1 walker (Fan et al. 2021), conv pooling, a class token, expansion in the MLP (`specs.MViTv1Spec`).

The input is a clip [B, C, T, H, W] (an image: T = 1). The cube embedding, a Conv3d of kernel (kt, kh, kw),
gives a t x h x w grid of width D; with the class token N = 1 + t*h*w tokens. Per block, with input width D,
output width D' (the next stage's in a stage's last block), heads n, head width d = D/n:
  qkv:      N * D * 3D
  pooling:  each pooled tensor of Q, K, V: the class token set aside, a depthwise conv of kt*kh*kw taps on
            [B*n, d, t, h, w] (stride s_q for Q, the adaptive s_kv for K/V), the class token put back in
            front (a concat), LayerNorm over d -> Nq = 1 + tq*hq*wq queries, Nk = 1 + tk*hk*wk keys
  scores:   n * Nq * Nk * d (QK^T) + n * Nq * Nk * d (AV),  proj: Nq * D^2
  residual: max pool (kernel s+1, stride s) of the block input where Q is strided, the class token set aside
  MLP:      Nq * D * rD + Nq * rD * D';  a linear D -> D' on norm2's output for the residual when D' != D.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import conv_out
from vitcost.analytic.peaks import LSE_BYTES, Block, PeakSteps, attend, conv_scratch, conv_weight, mlp, norm_stats
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import MViTv1Spec
from vitcost.vocab import INT64

Grid = tuple[Any, Any, Any]


def _pooled(grid: Grid, kernel: tuple[int, ...], stride: tuple[int, ...]) -> Grid:
    """The grid a kernel k, stride s, padding k // 2 pooling leaves on each axis."""
    return tuple(conv_out(g, k, s, k // 2) for g, k, s in zip(grid, kernel, stride))  # type: ignore[return-value]


def volume(grid: Grid) -> Any:
    return grid[0] * grid[1] * grid[2]


def skip_kernel(stride: tuple[int, ...]) -> tuple[int, ...]:
    """The residual's max-pool kernel: s + 1 on an axis with stride s > 1, else s (SlowFast's `kernel_skip`)."""
    return tuple(s + 1 if s > 1 else s for s in stride)


def pools(kernel: tuple[int, ...], stride: tuple[int, ...], strided_only: bool) -> bool:
    """Whether a pooling runs: Q only where it is strided (SlowFast gives its kernel only to the strided
    blocks); K/V wherever its kernel or stride is more than one tap."""
    if strided_only:
        return max(stride) > 1
    return max(kernel) > 1 or max(stride) > 1


def _pool(t: Trace, p: str, which: str, b: Any, heads: int, hd: int, grid: Grid, kernel: tuple[int, ...],
          stride: tuple[int, ...], qkv: str) -> Grid:
    """Depthwise conv pooling of one of q, k, v ([B*n, d, t, h, w], the class token set aside), the class token
    concatenated back, LayerNorm over d; the conv reads a contiguous copy of the op `qkv`'s head-split output."""
    out = t.conv3d(f"{p}.pool_{which}", b * heads, hd, hd, grid, kernel=kernel, stride=stride,
                   pad=tuple(k // 2 for k in kernel), groups=hd, bias=False, role="pool")
    t.note(src=(qkv,))
    n = 1 + volume(out)
    t.eltwise(f"{p}.pool_{which}", b * heads * n * hd, kind="concat", inp=b * heads * n * hd)
    t.norm(f"{p}.norm_{which}", b * heads * n, hd, role="pool")
    return out


def mvit1_block(t: Trace, p: str, b: Any, grid: Grid, dim: int, dim_out: int, heads: int, q_stride: tuple,
                kv_stride: tuple, spec: MViTv1Spec) -> Grid:
    """One multiscale block on `grid` (plus the class token), from dim to dim_out channels."""
    n = 1 + volume(grid)
    rows = b * n
    hd, k = dim // heads, tuple(spec.pool_kernel)
    t.norm(f"{p}.norm1", rows, dim)
    t.linear(f"{p}.attn.qkv", rows, dim, 3 * dim, role="proj")
    qkv = t.key()
    pool_q, pool_kv = pools(k, q_stride, True), pools(k, kv_stride, False)
    qg = _pool(t, f"{p}.attn", "q", b, heads, hd, grid, k, q_stride, qkv) if pool_q else grid
    kg = _pool(t, f"{p}.attn", "k", b, heads, hd, grid, k, kv_stride, qkv) if pool_kv else grid
    if pool_kv:
        _pool(t, f"{p}.attn", "v", b, heads, hd, grid, k, kv_stride, qkv)
    sources = [f"qkv={qkv}"] + [f"{which}={p}.attn.norm_{which}#layer_norm" for which, pooled
                                in (("q", pool_q), ("k", pool_kv), ("v", pool_kv)) if pooled]
    nq, nk = 1 + volume(qg), 1 + volume(kg)
    t.attention(f"{p}.attn", b, heads, nq, nk, hd)
    t.note(src=tuple(sources))
    t.linear(f"{p}.attn.proj", b * nq, dim, dim, role="proj")
    if max(q_stride) > 1:  # the residual max-pooled to the query grid, the class token set aside
        ks = skip_kernel(q_stride)
        pooled = b * volume(qg) * dim
        t.eltwise(f"{p}.pool_skip", pooled * ks[0] * ks[1] * ks[2], kind="pool", inp=b * (n - 1) * dim, out=pooled)
        t.note("max_pool", src=("copy",))  # of the tokens transposed to [B, D, t, h, w]: a contiguous copy
        t.eltwise(f"{p}.pool_skip", b * nq * dim, kind="concat", inp=b * nq * dim)
    t.eltwise(p, b * nq * dim)  # residual
    hidden = int(dim * spec.mlp_ratio)
    t.norm(f"{p}.norm2", b * nq, dim)
    norm2 = t.key()
    t.linear(f"{p}.mlp.fc1", b * nq, dim, hidden, role="mlp")
    t.gelu(f"{p}.mlp.act", b * nq * hidden)
    t.linear(f"{p}.mlp.fc2", b * nq, hidden, dim_out, role="mlp")
    if dim_out != dim:  # the residual projected from norm2's output
        t.linear(f"{p}.proj", b * nq, dim, dim_out, role="proj")
        t.note(src=(norm2,))
    t.eltwise(p, b * nq * dim_out)  # residual
    return qg


def embed(t: Trace, spec: MViTv1Spec, h: Any, w: Any, b: Any, frames: Any) -> Grid:
    """The cube embedding, the class token and the position embedding; returns the token grid."""
    ts = spec.patch_stride[0]
    if isinstance(frames, int) and frames % ts:
        what = "an image (one frame)" if frames == 1 else f"a clip of {frames} frames"
        raise SpecError(f"MViTv1Spec.patch_stride's temporal stride {ts} does not divide the frames of {what}: "
                        f"give T a multiple of {ts}.")
    grid = t.conv3d("patch_embed.proj", b, spec.in_chans, spec.dims[0], (frames, h, w),
                    kernel=tuple(spec.patch_kernel), stride=tuple(spec.patch_stride),
                    pad=tuple(spec.patch_padding), role="embed")
    if isinstance(h, int) and min(volume(grid), *grid) < 1:
        raise SpecError(f"{frames}x{h}x{w} is smaller than MViT's cube embedding.")
    d, tokens = spec.dims[0], volume(grid)
    t.param("cls_token", d)
    t.eltwise("", b * (1 + tokens) * d, kind="concat", inp=b * (1 + tokens) * d)  # the class token in front
    if spec.sep_pos_embed:  # spatial rows repeated over t, temporal rows over h*w, summed; the class row
        t.param("pos_embed_spatial", grid[1] * grid[2] * d)
        t.param("pos_embed_temporal", grid[0] * d)
        t.param("pos_embed_class", d)
        t.eltwise("", tokens * d, kind="add", inp=2 * tokens * d)
        t.eltwise("", (1 + tokens) * d, kind="concat", inp=(1 + tokens) * d)
    else:
        t.param("pos_embed", (1 + tokens) * d)
    t.eltwise("", b * (1 + tokens) * d)  # + position embedding
    return grid


def mvit1_trace(spec: MViTv1Spec, h: Any, w: Any, b: Any, frames: Any = 1) -> Trace:
    """The forward on a clip [b, C, frames, h, w] (an image: frames = 1)."""
    t = Trace(b)
    grid = embed(t, spec, h, w, b, frames)
    dim = spec.dims[0]
    last = len(spec.depths) - 1
    for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
        for i in range(depth):
            dim_out = spec.dims[s + 1] if i == depth - 1 and s < last else spec.dims[s]
            with t.block(f"blocks.{sum(spec.depths[:s]) + i}", "", b * (1 + volume(grid)) * dim):
                grid = mvit1_block(t, f"blocks.{sum(spec.depths[:s]) + i}", b, grid, dim, dim_out, heads,
                                   spec.q_stride(s) if i == 0 else (1, 1, 1), spec.kv_stride_at(s), spec)
            dim = dim_out
    t.norm("norm", b * (1 + volume(grid)), dim)
    t.linear("head", b, dim, spec.num_classes, role="head")  # on the class token
    return t


def grid(spec: MViTv1Spec, h: Any, w: Any) -> tuple[Any, Any]:
    """The cube embedding's spatial grid."""
    return tuple(conv_out(x, k, s, p) for x, k, s, p in  # type: ignore[return-value]
                 zip((h, w), spec.patch_kernel[1:], spec.patch_stride[1:], spec.patch_padding[1:]))


def time_grid(spec: MViTv1Spec, frames: Any) -> Any:
    """The cube embedding's temporal grid."""
    return conv_out(frames, spec.patch_kernel[0], spec.patch_stride[0], spec.patch_padding[0])


def lattice(spec: MViTv1Spec) -> tuple[int, int]:
    """Every pooled grid (Q and K/V strides) an exact division of the embedding's spatial grid."""
    stride, worst = 1, 1
    for s in range(len(spec.depths)):
        stride *= spec.q_stride(s)[1]
        worst = max(worst, stride * spec.kv_stride_at(s)[1])
    return spec.patch_stride[1] * worst, spec.patch_stride[1]


def complexity(spec: MViTv1Spec) -> str:
    return "O(R^4/s^2)"  # all pairs, keys pooled by stride s


def clip_complexity(spec: MViTv1Spec) -> str:
    return "O((T H W)^2/s^2)"  # all pairs of the t*h*w tokens, keys pooled by s


# ---------------------------------------------------------------------------------------------
# Memory: nets.mvit1.MultiScaleBlock


def block_memory(peak: PeakSteps, blk: Block, spec: MViTv1Spec, b: int, e: int, fused: bool, outer: int) -> None:
    """nets.mvit1.MultiScaleBlock, as SlowFast's: x_block = attn(norm1(x)) (norm1's output lives until attn
    returns); x_res = maxpool(x) or x; x = x_res + x_block; x_norm = norm2(x); x_mlp = mlp(x_norm);
    x = proj(x_norm) where the width changes; x + x_mlp. The block input (the model's loop variable) lives to
    the end; `outer`: what the callers hold besides it."""
    x = blk.inp
    n1 = blk.out("norm1")
    xin = outer + x * e
    proj = blk.out("attn.proj")
    mhpa(peak, blk, xin + n1 * e, b, e, fused)
    pool_op = blk.find("pool_skip", "pool")
    res = x
    if pool_op is not None:  # tokens to a contiguous [B, D, t, h, w] copy, max-pooled with int64 indices, concat
        peak.at(xin + (proj + x + pool_op.out) * e + pool_op.out * INT64, f"{blk.p}.pool_skip")
        cat = blk.out("pool_skip", "concat")
        peak.at(xin + (proj + pool_op.out + cat) * e, f"{blk.p} pool_skip concat")
        res = cat
    peak.at(xin + (proj + res + proj) * e, f"{blk.p} residual")
    base = xin + (res if res != x else 0) * e  # the pooled residual dies with the sum; the input lives on
    y = proj  # the sum
    n2 = blk.out("norm2")
    peak.at(base - (res if res != x else 0) * e + (y + n2) * e + norm_stats(blk.find("norm2")), f"{blk.p}.norm2")
    fc1, fc2 = blk.out("mlp.fc1"), blk.out("mlp.fc2")
    mlp(peak, blk.p, xin + (y + n2) * e, 0, fc1, fc2, e)
    sp = blk.out("proj", "linear")
    if sp:
        peak.at(xin + (y + n2 + fc2 + sp) * e, f"{blk.p}.proj")
    peak.at(xin + (n2 + fc2 + 2 * (sp or y)) * e, f"{blk.p} + mlp")


def mhpa(peak: PeakSteps, blk: Block, base: int, b: int, e: int, fused: bool) -> None:
    """nets.mvit1.MultiScaleAttention, `base` bytes alive: qkv (referenced to the end); each pooled q, k, v:
    the head-split view without its class token reshaped to [B*n, t, h, w, d] (a copy when B > 1 and n > 1)
    and permuted to a contiguous [B*n, d, t, h, w] copy, the conv, the class token concatenated back, the
    norm (the conv output lives until the pooling returns); then the attention core (`peaks.attend`: head-split
    views that are not pooled are copied by the matmul when B > 1 and n > 1), the head merge (a copy when
    n > 1) and proj."""
    a = blk.attention()
    qkv = blk.out("attn.qkv")
    full = qkv // 3 - a.batch * a.heads * a.head_dim  # one of q, k, v without its class token
    split = b > 1 and a.heads > 1
    p = f"{blk.p}.attn"
    base += qkv * e
    pooled = 0
    for which in ("q", "k", "v"):
        conv = blk.find(f"attn.pool_{which}", "conv")
        if conv is None:
            continue
        c, cat = conv.out, blk.out(f"attn.pool_{which}", "concat")
        peak.at(base + (pooled + (2 * full if split else full)) * e, f"{p} {which} to [B*n, d, t, h, w]")
        scratch = conv_scratch(peak, "depthwise", full, c, conv_weight(conv), e)
        peak.at(base + (pooled + full + c) * e, f"{p}.pool_{which}", scratch)
        peak.at(base + (pooled + c + cat) * e, f"{p} {which} concat")
        peak.at(base + (pooled + c + 2 * cat) * e + norm_stats(blk.find(f"attn.norm_{which}")), f"{p}.norm_{which}")
        pooled += cat
    base += pooled * e
    if fused:
        peak.at(base + a.q * e + a.rows * LSE_BYTES, f"{p} fused attention")
        o = a.q * e
    else:
        unpooled_q = blk.find("attn.norm_q") is None
        q_copy = a.q * e if split and unpooled_q else 0
        unpooled_kv = blk.find("attn.norm_k") is None
        o = attend(peak, p, base + q_copy, a, e, fused=False, split=split and unpooled_kv, terms=0)
    merge = a.q * e if a.heads > 1 else 0
    if merge:
        peak.at(base + o + merge, f"{p} merge heads")
    peak.at(base + (merge or o) + blk.out("attn.proj") * e, f"{p}.proj")


trace = mvit1_trace  # the registry reads every family module's `trace`
