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
from vitcost.analytic.liveness import LSE_BYTES, Attend, Call, Step, conv_scratch, conv_weight, norm_stats
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import MViTv1Spec

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
    t.note(src=(qkv,), part=True)  # memory: the attention's (`attention_memory`)
    n = 1 + volume(out)
    t.eltwise(f"{p}.pool_{which}", b * heads * n * hd, kind="concat", inp=b * heads * n * hd)
    t.note(part=True)
    t.norm(f"{p}.norm_{which}", b * heads * n, hd, role="pool")
    t.note(part=True)
    return out


def mvit1_block(t: Trace, p: str, b: Any, grid: Grid, dim: int, dim_out: int, heads: int, q_stride: tuple,
                kv_stride: tuple, spec: MViTv1Spec) -> Grid:
    """One multiscale block on `grid` (plus the class token), from dim to dim_out channels."""
    n = 1 + volume(grid)
    rows = b * n
    hd, k = dim // heads, tuple(spec.pool_kernel)
    block_input = shortcut = t.key()
    t.norm(f"{p}.norm1", rows, dim)
    t.linear(f"{p}.attn.qkv", rows, dim, 3 * dim, role="proj")
    t.note(keep=f"{p}.attn")  # a local to the module's return
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
    t.note(src=tuple(sources), attend="mvit1")
    t.linear(f"{p}.attn.proj", b * nq, dim, dim, role="proj")
    if max(q_stride) > 1:  # the residual max-pooled to the query grid, the class token set aside
        ks = skip_kernel(q_stride)
        pooled = b * volume(qg) * dim
        with t.scope("attention_pool"):  # its argument, the block input, lives until it returns
            t.eltwise(f"{p}.pool_skip", pooled * ks[0] * ks[1] * ks[2], kind="pool", inp=b * (n - 1) * dim,
                      out=pooled)
            # of the tokens transposed to a contiguous [B, D, t, h, w] copy, with int64 indices
            t.note("max_pool", src=("copy",), reads=(block_input,), temp=rows * dim, temp_index=pooled)
            t.eltwise(f"{p}.pool_skip", b * nq * dim, kind="concat", inp=b * nq * dim)
        shortcut = t.key()
    t.eltwise(p, b * nq * dim)  # residual: x_res + x_block
    t.note(reads=(shortcut,))
    total = t.key()
    hidden = int(dim * spec.mlp_ratio)
    t.norm(f"{p}.norm2", b * nq, dim)
    t.note(keep=p)  # x_norm, a local to the end
    norm2 = t.key()
    t.linear(f"{p}.mlp.fc1", b * nq, dim, hidden, role="mlp")
    t.gelu(f"{p}.mlp.act", b * nq * hidden)
    t.linear(f"{p}.mlp.fc2", b * nq, hidden, dim_out, role="mlp")
    mlp_out = t.key()
    if dim_out != dim:  # the residual projected from norm2's output: x = proj(x_norm) frees the sum
        t.linear(f"{p}.proj", b * nq, dim, dim_out, role="proj")
        t.note(src=(norm2,), stream=True, rebinds=(total,))
    t.eltwise(p, b * nq * dim_out)  # residual: x + x_mlp
    t.note(reads=(mlp_out,))
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
# Memory: nets.mvit1.MultiScaleAttention (`liveness`)


def attention_memory(c: Call) -> Attend:
    """nets.mvit1.MultiScaleAttention, on top of qkv (referenced to the end): each pooled q, k, v: the
    head-split view without its class token reshaped to [B*n, t, h, w, d] (a copy when B > 1 and n > 1) and
    permuted to a contiguous [B*n, d, t, h, w] copy, the conv, the class token concatenated back, the norm
    (the conv output lives until the pooling returns); then the attention core (`liveness.core_attention`: head-split
    views that are not pooled are copied by the matmul when B > 1 and n > 1) and the head merge (a copy when
    n > 1). Returns its steps, the pooled q, k, v kept to the end, and the output."""
    op, e, b = c.op, c.e, c.batch
    a = op.call
    ops = {(o.path, o.kind): o for o in c.block}
    qkv = ops[(f"{op.path}.qkv", "linear")].out
    full = qkv // 3 - a.batch * a.heads * a.head_dim  # one of q, k, v without its class token
    split = b > 1 and a.heads > 1
    steps = []
    pooled = 0
    for which in ("q", "k", "v"):
        conv = ops.get((f"{op.path}.pool_{which}", "conv"))
        if conv is None:
            continue
        k, cat, norm = conv.out, ops[(f"{op.path}.pool_{which}", "concat")].out, ops[(f"{op.path}.norm_{which}",
                                                                                       "layer_norm")]
        scratch = conv_scratch(c.peak, "depthwise", full, k, conv_weight(conv), e)
        steps += [Step(f"{which} to [B*n, d, t, h, w]", (pooled + (2 * full if split else full)) * e),
                  Step(f"pool_{which}", (pooled + full + k) * e, scratch),
                  Step(f"{which} concat", (pooled + k + cat) * e),
                  Step(f"norm_{which}", (pooled + k + 2 * cat) * e + norm_stats(norm))]
        pooled += cat
    base = pooled * e
    q = a.q * e
    if c.fused:
        steps.append(Step("fused attention", base + q + a.rows * LSE_BYTES))
    else:
        q_copy = q if split and (f"{op.path}.norm_q", "layer_norm") not in ops else 0
        ckv = a.kv * e if split and (f"{op.path}.norm_k", "layer_norm") not in ops else 0
        cq = q if ckv else 0
        s = a.scores * e
        top = base + q_copy
        steps += [Step("q @ k^T", top + q + cq + ckv + s), Step("softmax", top + 2 * s),
                  Step("scores @ v", top + 2 * s + ckv + q)]
    if a.heads > 1:
        steps.append(Step("merge heads", base + 2 * q))
    return Attend(steps, base, q)


ATTENTION = {"mvit1": attention_memory}  # the engine's programs (`liveness`)


trace = mvit1_trace  # the registry reads every family module's `trace`
