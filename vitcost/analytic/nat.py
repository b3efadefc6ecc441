"""NAT / DiNAT walker (Hassani et al. 2023; Hassani & Shi 2022) and the memory of neighbourhood-attention blocks.

Neighbourhood attention (NA) on an h x w grid of width C, kernel k (NAT paper, Table 1, softmax omitted):
    Omega(NA) = 3hwC^2 + 2hwCk^2        (qkv projections + q k^T and a v over k^2 neighbours each)
plus hwC^2 for the output projection, which Table 1 leaves out. Each token's k x k neighbours are a
window shifted inward at the borders, so every token has exactly k^2 of them; with dilation d the
window is taken inside the token's dilation group (the tokens whose row and column agree mod d), so
the count does not change with d. A (2k-1)^2-entry relative position bias per head adds h*w*k^2 terms
per head. As in NATTEN, an axis shorter than k*d is zero-padded (bottom/right) to k*d before qkv; qkv
and the attention run on the padded grid, the projection on the cropped one.

The attention record. A neighbourhood is a tiny attention call of its own: one query against its k^2
gathered keys. So one NA layer is recorded as one `attention(...)` call with B' = B*hp*wp sequences of
Nq = 1 query and Nkv = k^2 keys, heads h, head width C/h and one additive term (the gathered bias):
    QK  B'*h*1*k^2*d MACs = B*h*hp*wp*d*k^2    scores B*h*hp*wp*k^2 (the score bytes the math path holds)
    AV  B'*h*1*k^2*d MACs                     softmax over k^2 per query row
This is exactly the computation of the reference net (`nets.nat`), which gathers each token's
neighbourhood of K and V ([B, hp*wp*h, k^2, d]) and attends over it, so the memory model, the
training estimate and the roofline read the record without a special case: its `kv` elements
(B'*h*k^2*d) are the gathered K and V, k^2 times the un-gathered ones, which is what the reference
materialises. A new primitive would describe NATTEN's fused kernels better (they read K/V tiles once,
not k^2 gathered copies, so the roofline's fused-attention traffic here is an upper bound for them)
but would need its own memory and roofline rules; the counts (MACs, softmax, score elements) are the
same either way.

Counting conventions. NATTEN's `flops.py` (the fvcore handles used for the published figures) counts
QK as B*h*HW*d*k^2 and AV as B*h*HW*d*k^2 MACs, like this walker, and adds B*h*HW*k^2 for the
relative-position bias add of its unfused QK+RPB kernel (softmax is a separate aten op that fvcore
skips). Here the bias add is an elementwise op (the `flops` convention counts it, fvcore's does not),
so fvcore-convention totals sit below NATTEN's published count by sum over layers of B*h*HW*k^2
(see `natten_rpb_macs`, and NATSpec's docstring for the published figures). NATTEN's fused kernels
count QK + AV only: no softmax and no bias, the SDPA convention that FlopCounterMode applies to the
reference's sdpa path.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import conv_out, imax
from vitcost.analytic.liveness import LSE_BYTES, Attend, Call, Step
from vitcost.analytic.trace import Trace
from vitcost.specs import NATSpec

TOKENIZER_STRIDE = 4  # two 3x3 stride-2 convs


def padded(size: Any, kernel: int, dilation: int) -> Any:
    """NATTEN's padding along one axis: an axis shorter than the dilated window k*d is zero-padded to it."""
    return imax(size, kernel * dilation)


def neighbourhood_attention(t: Trace, p: str, b: Any, hp: Any, wp: Any, dim: Any, heads: int, kernel: Any) -> None:
    """qkv, relative position bias and the attention of one NA layer on a (padded) hp x wp grid
    (the output projection, on the unpadded grid, is the caller's):
        qkv   [B*hp*wp, C] -> [B*hp*wp, 3C]                                3 B hp wp C^2 MACs
        attn  B' = B*hp*wp neighbourhoods: q [B', h, 1, d] against k, v [B', h, k^2, d]
              + gathered bias [h, 1, k^2] per neighbourhood                2 B hp wp C k^2 MACs"""
    t.linear(f"{p}.qkv", b * hp * wp, dim, 3 * dim, role="proj")
    t.note(keep=p)  # q, k, v: views of it, locals to the return
    qkv = t.key()
    t.param(f"{p}.rpb", heads * (2 * kernel - 1) ** 2)
    t.attention(p, b * hp * wp, heads, 1, kernel * kernel, dim // heads, terms=1)
    # k and v are gathered neighbourhoods; the bias is gathered from its float32 table
    t.note("gathered_kv", "f32_terms", src=(f"qkv={qkv}",), attend="nat")


def nat_block(t: Trace, p: str, b: Any, gh: Any, gw: Any, dim: int, heads: int, hidden: int, kernel: int,
              dilation: int, layer_scale: bool) -> None:
    """x = x + g1 * proj(NA(norm1(x)));  x = x + g2 * fc2(GELU(fc1(norm2(x)))), g = layer scale (or 1)."""
    rows, x = b * gh * gw, b * gh * gw * dim
    hp, wp = padded(gh, kernel, dilation), padded(gw, kernel, dilation)
    crop = not isinstance(hp, int) or (hp, wp) != (gh, gw)
    t.norm(f"{p}.norm1", rows, dim)
    if crop:
        t.copy(f"{p}.attn", b * hp * wp * dim, "pad")
    neighbourhood_attention(t, f"{p}.attn", b, hp, wp, dim, heads, kernel)
    t.linear(f"{p}.attn.proj", rows, dim, dim, role="proj")
    t.note(temp=x if crop else 0)  # reads the cropped view through a contiguous copy
    if layer_scale:
        t.param(f"{p}.gamma1", dim)
        t.eltwise(p, x, kind="scale")
    t.eltwise(p, x)  # residual
    t.norm(f"{p}.norm2", rows, dim)
    t.linear(f"{p}.mlp.fc1", rows, dim, hidden, role="mlp")
    t.gelu(f"{p}.mlp.act", rows * hidden)
    t.linear(f"{p}.mlp.fc2", rows, hidden, dim, role="mlp")
    if layer_scale:
        t.param(f"{p}.gamma2", dim)
        t.eltwise(p, x, kind="scale")
    t.eltwise(p, x)  # residual


def nat_trace(spec: NATSpec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    c = spec.embed_dim
    gh, gw = t.conv("patch_embed.proj.0", b, spec.in_chans, c // 2, h, w, kernel=3, stride=2, pad=1, role="embed")
    gh, gw = t.conv("patch_embed.proj.1", b, c // 2, c, gh, gw, kernel=3, stride=2, pad=1, role="embed")
    t.norm("patch_embed.norm", b * gh * gw, c)
    last = len(spec.depths) - 1
    for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
        c = spec.stage_dim(s)
        for i in range(depth):
            with t.block(f"levels.{s}.blocks.{i}", f"levels.{s}", b * gh * gw * c):
                nat_block(t, f"levels.{s}.blocks.{i}", b, gh, gw, c, heads, int(c * spec.mlp_ratio), spec.kernel,
                          spec.dilation(s, i), spec.layer_scale > 0)
        if s < last:  # the level ends with its downsampler: 3x3 stride-2 conv C -> 2C, no bias, then norm
            gh, gw = t.conv(f"levels.{s}.downsample.reduction", b, c, 2 * c, gh, gw, kernel=3, stride=2, pad=1,
                            bias=False, role="pool")
            t.norm(f"levels.{s}.downsample.norm", b * gh * gw, 2 * c, role="pool")
    t.norm("norm", b * gh * gw, c)
    t.eltwise("", b * c, kind="pool", inp=b * gh * gw * c)  # mean over tokens
    t.linear("head", b, c, spec.num_classes, role="head")
    return t


def natten_rpb_macs(spec: NATSpec, h: int, w: int, b: int = 1) -> int:
    """What NATTEN's fvcore handle for its unfused QK+RPB kernel adds on top of QK: one per score
    element (B*h*hp*wp*k^2 per layer), the difference between its published counts and fvcore's here."""
    return sum(op.call.scores for op in nat_trace(spec, h, w, b).ops if op.call is not None)


def grid(spec: NATSpec, h: Any, w: Any) -> tuple[Any, Any]:
    """The tokenizer's output grid: two 3x3 stride-2 convs with padding 1, ceil(ceil(h/2)/2)."""
    return conv_out(conv_out(h, 3, 2, 1), 3, 2, 1), conv_out(conv_out(w, 3, 2, 1), 3, 2, 1)


def lattice(spec: NATSpec) -> tuple[int, int]:
    """Every stage's grid an exact halving and at least kernel * dilation (no padding anywhere): stage s
    has R / (4 * 2^s) tokens a side, so R = 4 * 2^(S-1) * m with 2^(S-1-s) * m >= k * d_s for all s."""
    stages = len(spec.depths)
    m = 1
    for s, depth in enumerate(spec.depths):
        need = spec.kernel * max(spec.dilation(s, i) for i in range(depth))
        m = max(m, -(-need // 2 ** (stages - 1 - s)))
    return TOKENIZER_STRIDE * 2 ** (stages - 1) * m, TOKENIZER_STRIDE


def complexity(spec: NATSpec) -> str:
    return "O(HW·D·K²)"  # k^2 neighbours per token, whatever the dilation


# ---------------------------------------------------------------------------------------------
# Memory: nets.nat.NATLayer


def attention_memory(c: Call) -> Attend:
    """nets.nat.NeighborhoodAttention's call: the contiguous queries [B, hp*wp*h, 1, d] (a copy of q's strided
    view of qkv when h > 1; with one head a view), the gathered K and V ([B, hp*wp*h, k^2, d] each: the
    call's `kv`) and the gathered bias [1, hp*wp*h, 1, k^2] (one image's score size), alive through the
    attention core (`liveness.core_attention`; no flash scratch: NATTEN's kernels keep theirs on chip) and
    dead once it returns."""
    a, e = c.op.call, c.e
    pre = ((a.q if a.heads > 1 else 0) + 2 * a.kv) * e + a.scores // c.batch * e
    q, s = a.q * e, a.scores * e
    if c.fused:
        return Attend([Step("fused attention", pre + q + a.rows * LSE_BYTES)], 0, q)
    return Attend([Step("q @ k^T", pre + q + s), Step("softmax", pre + 2 * s), Step("scores @ v", pre + 2 * s + q)],
                  0, q)


ATTENTION = {"nat": attention_memory}  # the engine's programs (`liveness`)


trace = nat_trace  # the registry reads every family module's `trace`
