"""MViTv2 walker (Li et al. 2022), conv pooling, no class token, expand-in-attention.

Per block with input grid h x w of width D_in, output width D, heads n, head width d = D/n:
  qkv:      h*w * D_in * 3D
  pooling:  Q, K, V each: depthwise k x k conv on [n, d, h, w] (stride s_q for Q, s_kv for K/V),
            then LayerNorm over d -> Nq = hq*wq queries, Nk = hk*wk keys
  scores:   n * Nq * Nk * d (QK^T) + n * Nq * (hk + wk) * d (decomposed relative positions)
            + n * Nq * Nk * d (AV); residual pooling adds Q to the output
  proj:     Nq * D^2,  MLP: 2 * r * Nq * D^2
  shortcut: a linear D_in -> D when the width changes, max-pooled with the Q stride.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.cost import AttnCall
from vitcost.analytic.ints import conv_out, imax
from vitcost.analytic.peaks import INDEX_BYTES, Block, PeakSteps, attend, mlp
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import MViTSpec


def _pool(t: Trace, p: str, which: str, b: Any, heads: int, hd: int, h: Any, w: Any, k: int, stride: int
          ) -> tuple[Any, Any]:
    """Depthwise conv pooling shared across heads: [b*heads, hd, h, w] -> [b*heads, hd, ho, wo], then norm."""
    ho, wo = t.conv(f"{p}.pool_{which}", b * heads, hd, hd, h, w, kernel=k, stride=stride, pad=k // 2,
                    groups=hd, bias=False, role="pool")
    t.norm(f"{p}.norm_{which}", b * heads * ho * wo, hd, role="pool")
    return ho, wo


def mvit_block(t: Trace, p: str, b: Any, h: Any, w: Any, dim_in: int, dim: int, heads: int, q_stride: int,
               kv_stride: int, spec: MViTSpec) -> tuple[Any, Any]:
    rows = b * h * w
    hd, k = dim // heads, spec.pool_kernel
    t.norm(f"{p}.norm1", rows, dim_in)
    short = rows * dim_in
    if dim_in != dim:
        t.linear(f"{p}.shortcut_proj_attn", rows, dim_in, dim, role="proj")
        short = rows * dim
    t.linear(f"{p}.attn.qkv", rows, dim_in, 3 * dim, role="proj")
    pool_q = k > 1 or q_stride > 1
    pool_kv = k > 1 or kv_stride > 1
    qh, qw = _pool(t, f"{p}.attn", "q", b, heads, hd, h, w, k, q_stride) if pool_q else (h, w)
    kh, kw = _pool(t, f"{p}.attn", "k", b, heads, hd, h, w, k, kv_stride) if pool_kv else (h, w)
    if pool_kv:
        _pool(t, f"{p}.attn", "v", b, heads, hd, h, w, k, kv_stride)
    nq, nk = qh * qw, kh * kw
    if q_stride > 1:  # max-pool the shortcut to the query grid
        ks = q_stride + 1
        t.eltwise(f"{p}.shortcut_pool_attn", b * nq * dim * ks * ks, kind="pool", inp=short, out=b * nq * dim)
    if spec.rel_pos:
        t.param(f"{p}.attn.rel_pos_h", (2 * imax(qh, kh) - 1) * hd)
        t.param(f"{p}.attn.rel_pos_w", (2 * imax(qw, kw) - 1) * hd)
    t.attention(f"{p}.attn", b, heads, nq, nk, hd, rel=(qh, qw, kh, kw) if spec.rel_pos else (),
                residual=spec.residual_pooling)
    t.linear(f"{p}.attn.proj", b * nq, dim, dim, role="proj")
    y = b * nq * dim
    t.eltwise(p, y)  # residual
    hidden = int(dim * spec.mlp_ratio)
    t.norm(f"{p}.norm2", b * nq, dim)
    t.linear(f"{p}.mlp.fc1", b * nq, dim, hidden, role="mlp")
    t.gelu(f"{p}.mlp.act", b * nq * hidden)
    t.linear(f"{p}.mlp.fc2", b * nq, hidden, dim, role="mlp")
    t.eltwise(p, y)  # residual
    return qh, qw


def mvit_trace(spec: MViTSpec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    if isinstance(h, int) and min(h, w) < spec.stem_kernel:
        raise SpecError(f"{h}x{w} is smaller than the {spec.stem_kernel}x{spec.stem_kernel} stem of MViTv2.")
    gh, gw = t.conv("patch_embed.proj", b, spec.in_chans, spec.dims[0], h, w, kernel=spec.stem_kernel,
                    stride=spec.stem_stride, pad=spec.stem_kernel // 2, role="embed")
    dim_in = spec.dims[0]
    for s, (dim, depth, heads) in enumerate(zip(spec.dims, spec.depths, spec.heads)):
        for i in range(depth):
            gh, gw = mvit_block(t, f"stages.{s}.blocks.{i}", b, gh, gw, dim_in, dim, heads,
                                spec.q_stride(s) if i == 0 else 1, spec.kv_stride_at(s), spec)
            dim_in = dim
    t.norm("norm", b * gh * gw, dim_in)
    t.eltwise("", b * dim_in, kind="pool", inp=b * gh * gw * dim_in)  # mean over tokens
    t.linear("head", b, dim_in, spec.num_classes, role="head")
    return t


def grid(spec: MViTSpec, h: Any, w: Any) -> tuple[Any, Any]:
    """The stem's output grid."""
    return (conv_out(h, spec.stem_kernel, spec.stem_stride, spec.stem_kernel // 2),
            conv_out(w, spec.stem_kernel, spec.stem_stride, spec.stem_kernel // 2))


def lattice(spec: MViTSpec) -> tuple[int, int]:
    """Every pooled grid (Q and K/V strides) an exact division."""
    stride, worst = 1, 1
    for s in range(len(spec.depths)):
        stride *= spec.q_stride(s)
        worst = max(worst, stride * spec.kv_stride_at(s))
    return spec.stem_stride * worst, spec.stem_stride


def complexity(spec: MViTSpec) -> str:
    return "O(R^4/s^2)"  # all pairs, keys pooled by stride s


# ---------------------------------------------------------------------------------------------
# Memory: nets.mvit.MultiScaleBlock


def block_memory(peak: PeakSteps, blk: Block, spec: MViTSpec, b: int, e: int, fused: bool, outer: int) -> None:
    """y = norm1(x); shortcut = pool(proj(y) or x); q, k, v = pool(qkv(y));
    x = shortcut + proj(attention(q, k, v) + q); x = x + mlp(norm2(x)). y and the shortcut stay alive."""
    x = blk.out("norm1")
    a = blk.attention()
    heads = a.heads
    qkv = blk.out("attn.qkv")
    sp = blk.out("shortcut_proj_attn", "linear")
    pool_op = blk.find("shortcut_pool_attn", "pool")
    short = 0
    if sp:
        peak.at(outer + (2 * x + sp) * e, f"{blk.p} shortcut_proj_attn")
        short = sp
    if pool_op is not None:
        pooled = pool_op.out  # [B, Nq, D]
        peak.at(outer + (2 * x + short) * e + pooled * (e + INDEX_BYTES), f"{blk.p} shortcut_pool_attn")
        short = pooled
    base0 = outer + (2 * x + short) * e  # block input, y = norm1(x), the shortcut when it is a new tensor
    # pooling of q, k, v: each head-split view is copied for the conv when B > 1 and h > 1
    split = b > 1 and heads > 1
    pooled_so_far = 0
    full = qkv // 3
    for which in ("q", "k", "v"):
        conv = blk.out(f"attn.pool_{which}", "conv")
        if not conv:
            continue
        cp = full if split else 0
        peak.at(base0 + (qkv + pooled_so_far + cp + conv) * e, f"{blk.p} attn.pool_{which}")
        peak.at(base0 + (qkv + pooled_so_far + 2 * conv) * e, f"{blk.p} attn.norm_{which}")
        pooled_so_far += conv
    pooled = blk.find("attn.norm_q") is not None
    # after pooling qkv is freed (q, k, v were its views); unpooled q/k/v stay views of qkv
    qkv_alive = a.q + 2 * a.kv if pooled else qkv
    base = base0 + qkv_alive * e
    if a.rel:
        _rel_pos(peak, f"{blk.p}.attn", base, a, e)
    rel = a.scores * e if a.rel else 0  # decomposed rel-pos expands to a full [B, h, Nq, Nk] term
    o = attend(peak, f"{blk.p}.attn", base, a, e, fused=fused, split=split and not pooled, terms=rel)
    residual = a.q * e if a.residual else 0
    if residual:
        peak.at(base + o + residual, f"{blk.p} attn residual pooling")
    # merging heads copies a [B, h, N, d] tensor: the residual sum's, or a math path's output (a fused
    # kernel's output is laid out [B, N, h, d] already)
    merge = a.q * e if heads > 1 and (residual or not fused) else 0
    after = residual or o
    peak.at(base + after + merge + blk.out("attn.proj") * e, f"{blk.p} attn.proj")
    y_out = blk.out("mlp.fc2")
    mlp(peak, blk.p, base0 + y_out * e, y_out, blk.out("mlp.fc1"), y_out, e)


def _rel_pos(peak: PeakSteps, where: str, base: int, a: AttnCall, e: int) -> None:
    """nets.mvit MultiScaleAttention._rel_pos: gather R_h [qh, kh, d] and R_w [qw, kw, d]; q @ R_h^T
    broadcasts R_h over the B*h batch (a copy of B*h*qh*d*kh); the product along w reads a transposed q
    (a copy of q) and a broadcast R_w; then rel_h + rel_w expand to the full [B, h, Nq, Nk] term."""
    qh, qw, kh, kw = a.rel
    bh, d = a.batch * a.heads, a.head_dim
    copy_h, copy_w = bh * qh * d * kh, bh * qw * d * kw  # the broadcast tables
    rel_h, rel_w = bh * qh * qw * kh, bh * qw * qh * kw
    tables = (copy_h + copy_w) // bh  # R_h and R_w themselves
    peak.at(base + (tables + copy_h + rel_h) * e, f"{where} rel_pos h")
    peak.at(base + (tables + rel_h + a.q + copy_w + rel_w) * e, f"{where} rel_pos w")
    peak.at(base + (tables + rel_h + rel_w + a.scores) * e, f"{where} rel_pos term")


trace = mvit_trace  # the registry reads every family module's `trace`
