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

from vitcost.analytic.ints import imax
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import MViTSpec


def _pool(t: Trace, p: str, which: str, b: Any, heads: int, hd: int, h: Any, w: Any, k: int, stride: int,
          held: Any) -> tuple[Any, Any]:
    """Depthwise conv pooling shared across heads: [b*heads, hd, h, w] -> [b*heads, hd, ho, wo], then norm."""
    ho, wo = t.conv(f"{p}.pool_{which}", b * heads, hd, hd, h, w, kernel=k, stride=stride, pad=k // 2,
                    groups=hd, bias=False, role="pool", held=held)
    t.norm(f"{p}.norm_{which}", b * heads * ho * wo, hd, role="pool", held=held)
    return ho, wo


def mvit_block(t: Trace, p: str, b: Any, h: Any, w: Any, dim_in: int, dim: int, heads: int, q_stride: int,
               kv_stride: int, spec: MViTSpec) -> tuple[Any, Any]:
    rows, x = b * h * w, b * h * w * dim_in
    hd, k = dim // heads, spec.pool_kernel
    t.norm(f"{p}.norm1", rows, dim_in, held=x)
    short = x
    if dim_in != dim:
        t.linear(f"{p}.shortcut_proj_attn", rows, dim_in, dim, role="proj", held=x)
        short = rows * dim
    qkv = rows * 3 * dim
    t.linear(f"{p}.attn.qkv", rows, dim_in, 3 * dim, role="proj", held=short)
    pool_q = k > 1 or q_stride > 1
    pool_kv = k > 1 or kv_stride > 1
    qh, qw = _pool(t, f"{p}.attn", "q", b, heads, hd, h, w, k, q_stride, short + qkv) if pool_q else (h, w)
    kh, kw = _pool(t, f"{p}.attn", "k", b, heads, hd, h, w, k, kv_stride, short + qkv) if pool_kv else (h, w)
    if pool_kv:
        _pool(t, f"{p}.attn", "v", b, heads, hd, h, w, k, kv_stride, short + qkv)
    nq, nk = qh * qw, kh * kw
    if q_stride > 1:  # max-pool the shortcut to the query grid
        ks = q_stride + 1
        t.eltwise(f"{p}.shortcut_pool_attn", b * nq * dim * ks * ks, kind="pool", inp=short, out=b * nq * dim)
        short = b * nq * dim

    def rel_pos(scores: Any, held: Any) -> None:
        # q: [b, n, qh, qw, d] against Rh: [qh, kh, d] -> [b, n, qh, qw, kh]; likewise along w
        t.param(f"{p}.attn.rel_pos_h", (2 * imax(qh, kh) - 1) * hd)
        t.param(f"{p}.attn.rel_pos_w", (2 * imax(qw, kw) - 1) * hd)
        t.matmul(f"{p}.attn", b * heads * qh, qw, hd, kh, held=held)
        t.matmul(f"{p}.attn", b * heads * qw, qh, hd, kw, held=held)
        rel_h, rel_w = b * heads * nq * kh, b * heads * nq * kw
        t.eltwise(f"{p}.attn", scores, inp=rel_h + rel_w, held=held)  # rel_h + rel_w -> a [b, n, Nq, Nk] term
        t.eltwise(f"{p}.attn", scores, held=held)  # scores + term

    t.attention(f"{p}.attn", b, heads, nq, nk, hd, held=short, extra=rel_pos if spec.rel_pos else None)
    if spec.residual_pooling:
        t.eltwise(f"{p}.attn", b * heads * nq * hd, held=short)
    t.linear(f"{p}.attn.proj", b * nq, dim, dim, role="proj", held=short)
    y = b * nq * dim
    t.eltwise(p, y, held=0)  # residual
    t.norm(f"{p}.norm2", b * nq, dim, held=y)
    hidden = int(dim * spec.mlp_ratio)
    t.linear(f"{p}.mlp.fc1", b * nq, dim, hidden, role="mlp", held=y + y)
    t.gelu(f"{p}.mlp.act", b * nq * hidden, held=y + y)
    t.linear(f"{p}.mlp.fc2", b * nq, hidden, dim, role="mlp", held=y + y)
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
