"""Global (and windowed) attention transformers: ViT patch attention and pixel-level attention.

Both are a token grid fed to `depth` pre-norm blocks (Vaswani et al. 2017; Dosovitskiy et al. 2021):
    x = x + proj(MSA(norm1(x)));  x = x + fc2(GELU(fc1(norm2(x))))
Per block and image, with N tokens of width D (Swin paper Eq. 1 plus the MLP):
    qkv 3ND^2 + QK^T N^2 D + AV N^2 D + proj ND^2 + MLP 2*r*ND^2  MACs.
A windowed block (ViTSpec.window > 0, ViTDet / SAM) pads the gh x gw grid to multiples of the window M
and attends inside each M x M window: qkv and proj run on the padded grid, the scores cost
2 * (padded tokens) * M^2 * D instead of 2 N^2 D.

The SAM image encoder (Kirillov et al. 2023) adds decomposed relative positions (MViTv2, Li et al. 2022)
to the scores of every block: per head, q [h x w, d] against a table gathered along each axis,
    rel_h: h*w * h * d MACs,  rel_w: h*w * w * d MACs  (an M x M window: 2 * M^3 * d per window),
broadcast to an (h*w) x (h*w) term; and a neck in place of the final norm: a 1x1 conv D -> C_n
(gh*gw*D*C_n MACs), LayerNorm2d, a 3x3 conv C_n -> C_n (gh*gw*C_n^2*9 MACs), LayerNorm2d.

Linear attention (ViTSpec.attention = "linear"; Katharopoulos et al. 2020) replaces the scores by
phi(Q) (phi(K)^T V) normalised by phi(Q) . sum_n phi(K_n), phi = elu + 1: per head 2 N d^2 + N d MACs
(`trace.linear_attention_steps`) instead of 2 N^2 d, in global and windowed blocks alike.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.cost import LinearAttnCall
from vitcost.analytic.ints import ceil_div, floor_div
from vitcost.analytic.mvit import _rel_pos as rel_pos_memory
from vitcost.analytic.peaks import Block, PeakSteps, attend, mlp
from vitcost.analytic.trace import Trace
from vitcost.specs import PixelSpec, ViTSpec


def rel_pos_tables(t: Trace, p: str, head_dim: int, gh: Any, gw: Any) -> tuple:
    """The decomposed relative-position tables of an attention over a gh x gw grid (2*size-1 rows of
    head_dim per axis) and the `rel` grids (qh, qw, kh, kw) of its attention record."""
    t.param(f"{p}.rel_pos_h", (2 * gh - 1) * head_dim)
    t.param(f"{p}.rel_pos_w", (2 * gw - 1) * head_dim)
    return (gh, gw, gh, gw)


def transformer_block(t: Trace, p: str, b: Any, n: Any, dim: int, heads: int, hidden: int, *,
                      rel_grid: tuple = (), linear: bool = False) -> None:
    """One pre-norm global-attention block over n tokens of width dim, path prefix `p`; with `rel_grid`
    (gh, gw) the n = gh*gw tokens get decomposed relative positions; `linear`: linear attention."""
    rows, x = b * n, b * n * dim
    t.norm(f"{p}.norm1", rows, dim)
    t.linear(f"{p}.attn.qkv", rows, dim, 3 * dim, role="proj")
    rel = rel_pos_tables(t, f"{p}.attn", dim // heads, *rel_grid) if rel_grid else ()
    if linear:
        t.linear_attention(f"{p}.attn", b, heads, n, dim // heads)
    else:
        t.attention(f"{p}.attn", b, heads, n, n, dim // heads, rel=rel)
    t.linear(f"{p}.attn.proj", rows, dim, dim, role="proj")
    t.eltwise(p, x)  # residual
    channel_mlp(t, p, rows, dim, hidden)


def channel_mlp(t: Trace, p: str, rows: Any, dim: int, hidden: int) -> None:
    """x + fc2(GELU(fc1(norm2(x)))) over `rows` tokens."""
    t.norm(f"{p}.norm2", rows, dim)
    t.linear(f"{p}.mlp.fc1", rows, dim, hidden, role="mlp")
    t.gelu(f"{p}.mlp.act", rows * hidden)
    t.linear(f"{p}.mlp.fc2", rows, hidden, dim, role="mlp")
    t.eltwise(p, rows * dim)  # residual


def padded(size: Any, window: int) -> Any:
    """`size` rounded up to a multiple of `window` (the zero padding of a windowed block)."""
    return ceil_div(size, window) * window


def windowed_block(t: Trace, p: str, b: Any, gh: Any, gw: Any, dim: int, heads: int, hidden: int,
                   wh: int, ww: int, *, terms: int = 0, rel_pos: bool = False, linear: bool = False) -> None:
    """One pre-norm block attending inside wh x ww windows of a gh x gw grid zero-padded to multiples
    of the window (ViTDet; Swin without its shift): qkv, scores and proj on the padded grid, `terms`
    additive terms on the scores (Swin's bias and shift mask), decomposed relative positions within
    each window with `rel_pos` (SAM), linear attention within each window with `linear`, MLP on the
    unpadded grid."""
    hp, wp = padded(gh, wh), padded(gw, ww)
    windows = b * (hp // wh if isinstance(hp, int) else hp / wh) * (wp // ww if isinstance(wp, int) else wp / ww)
    t.norm(f"{p}.norm1", b * gh * gw, dim)
    t.linear(f"{p}.attn.qkv", b * hp * wp, dim, 3 * dim, role="proj")
    rel = rel_pos_tables(t, f"{p}.attn", dim // heads, wh, ww) if rel_pos else ()
    if linear:
        t.linear_attention(f"{p}.attn", windows, heads, wh * ww, dim // heads)
    else:
        t.attention(f"{p}.attn", windows, heads, wh * ww, wh * ww, dim // heads, terms=terms, rel=rel)
    t.linear(f"{p}.attn.proj", b * hp * wp, dim, dim, role="proj")
    t.eltwise(p, b * gh * gw * dim)  # residual
    channel_mlp(t, p, b * gh * gw, dim, hidden)


def vit_trace(spec: ViTSpec | PixelSpec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    d = spec.dim
    gh, gw = t.conv("patch_embed.proj", b, spec.in_chans, d, h, w, kernel=spec.patch, stride=spec.patch,
                    pad=0, role="embed")
    n = gh * gw + spec.class_tokens
    if spec.distilled:  # DeiT: a class token and a distillation token
        t.param("cls_token", d)
        t.param("dist_token", d)
    elif spec.class_tokens:
        t.param("cls_token", spec.class_tokens * d)
    t.param("pos_embed", n * d)
    t.eltwise("", b * n * d)  # + pos_embed, in the model's own forward
    for i in range(spec.depth):
        win = spec.block_window(i)
        if win:
            windowed_block(t, f"blocks.{i}", b, gh, gw, d, spec.heads, spec.mlp_hidden, win, win,
                           rel_pos=spec.rel_pos, linear=spec.attention == "linear")
        else:
            transformer_block(t, f"blocks.{i}", b, n, d, spec.heads, spec.mlp_hidden,
                              rel_grid=(gh, gw) if spec.rel_pos else (), linear=spec.attention == "linear")
    if isinstance(spec, PixelSpec):
        t.norm("norm", b * n, d)
        t.linear("head", b * n, d, spec.vocab, role="head")  # a palette logit per pixel
        return t
    if spec.neck:
        d, n = neck(t, b, d, spec.neck, gh, gw), gh * gw
    else:
        t.norm("norm", b * n, d)
    if spec.num_classes:
        if not spec.class_tokens:
            t.eltwise("", b * d, kind="pool", inp=b * n * d)  # mean over tokens (or over the neck's grid)
        t.linear("head", b, d, spec.num_classes, role="head")  # on the class token or the mean
        if spec.distilled:  # DeiT: head_dist on the distillation token, (head + head_dist) / 2
            t.linear("head_dist", b, d, spec.num_classes, role="head")
            t.eltwise("", 2 * b * spec.num_classes)
    return t


def neck(t: Trace, b: Any, dim: int, channels: int, gh: Any, gw: Any) -> int:
    """SAM's neck on the [B, D, gh, gw] token grid: 1x1 conv D -> C (no bias), LayerNorm2d over C,
    3x3 conv C -> C (padding 1, no bias), LayerNorm2d. Returns C."""
    t.conv("neck.0", b, dim, channels, gh, gw, kernel=1, stride=1, pad=0, bias=False, role="head")
    t.norm("neck.1", b * gh * gw, channels)
    t.conv("neck.2", b, channels, channels, gh, gw, kernel=3, stride=1, pad=1, bias=False, role="head")
    t.norm("neck.3", b * gh * gw, channels)
    return channels


def grid(spec: ViTSpec | PixelSpec, h: Any, w: Any) -> tuple[Any, Any]:
    """The token grid: one token per patch."""
    return floor_div(h, spec.patch), floor_div(w, spec.patch)


def lattice(spec: ViTSpec | PixelSpec) -> tuple[int, int]:
    """Resolutions on multiples of the patch (times the window, for windowed blocks) round nowhere."""
    return spec.patch * max(spec.window, 1), spec.patch


def complexity(spec: ViTSpec | PixelSpec) -> str:
    if isinstance(spec, PixelSpec):
        return "O(R^4)"  # R^2 tokens, all pairs
    if spec.attention == "linear":
        return "O(HW·C·d)"  # N d^2 per head (Katharopoulos et al. 2020), windows or not
    if spec.window and not spec.global_blocks:
        return "O(HWC)"  # fixed windows: 2 * M^2 * HW * C
    if spec.window:
        return "O(HWC) + O((HW)^2 C)"  # window blocks linear in the tokens, the global blocks all pairs
    return "O(R^4/P^4)"  # (R/P)^2 tokens, all pairs


# ---------------------------------------------------------------------------------------------
# Memory: nets.vit.Block


def block_memory(peak: PeakSteps, blk: Block, spec: ViTSpec | PixelSpec, b: int, e: int, fused: bool,
                 outer: int) -> None:
    """x = x + proj(attn(norm1(x))); x = x + mlp(norm2(x)). The block input, norm1's output and the qkv
    projection are alive through the attention; merging the heads back copies the output when h > 1.

    A windowed block (nets.vit.Block._windowed) holds the block input, the zero-padded norm1 output, its
    window partition (a copy unless one window spans the grid) and qkv through the attention, and frees
    the padded grid before the MLP. Decomposed relative positions (SAM) build a score-sized additive term
    before the attention and keep it alive through it (`mvit._rel_pos` models the steps that build it;
    here q is a head-split view of qkv, so reshaping it for the products copies it when B' > 1 and h > 1)."""
    x = blk.out("norm1")
    qkv = blk.out("attn.qkv")
    a = blk.attention()
    if spec.block_window(blk.index):
        xp = qkv // 3  # the padded grid: qkv runs on every padded token
        partition_copy = 0 if a.batch == b else xp  # window_partition is a view when a window spans the grid
        base = outer + (x + xp + partition_copy + qkv) * e
    else:
        base = outer + (x + x + qkv) * e  # block input, norm1 output, qkv
    split = a.batch > 1 and a.heads > 1
    if isinstance(a, LinearAttnCall):
        o = linear_attention_memory(peak, f"{blk.p}.attn", base, a, e, split=split)
        merge = o if a.heads > 1 else 0  # the [B', h, N, d] output merged back to [B', N, D]
        peak.at(base + o + merge + blk.out("attn.proj") * e, f"{blk.p} attn.proj")
        mlp(peak, blk.p, outer + 2 * x * e, x, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)
        return
    terms = 0
    if a.rel:
        rel_pos_memory(peak, f"{blk.p}.attn", base + (a.q * e if split else 0), a, e)
        terms = a.scores * e  # decomposed rel-pos expands to a full [B', h, N, N] term
    o = attend(peak, blk.p, base, a, e, fused=fused, split=split, terms=terms)
    merge = o if a.heads > 1 and not fused else 0  # a fused kernel's output is laid out [B, N, h, d] already
    peak.at(base + o + merge + blk.out("attn.proj") * e, f"{blk.p} attn.proj")
    mlp(peak, blk.p, outer + 2 * x * e, x, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)  # input, x + attn


def linear_attention_memory(peak: PeakSteps, where: str, base: int, a: LinearAttnCall, e: int, *,
                            split: bool) -> int:
    """nets.vit.linear_attend, `base` bytes alive: phi(k) (elu's output, +1 in place) lives while the
    state phi(k)^T v and the key sum are formed, v copied for the product when it is a head-split view
    (B' > 1 and h > 1); then phi(q), its two products and the division: at the division phi(q), the
    numerator, the normaliser + eps and the output are alive with the state and the key sum. Returns
    the output bytes."""
    q, s, ks, r = a.q, a.state, a.k_sum, a.rows
    peak.at(base + (q + (q if split else 0) + s) * e, f"{where} phi(k)^T v")
    peak.at(base + (q + s + ks) * e, f"{where} sum phi(k)")
    peak.at(base + (s + ks + 2 * q + 2 * r) * e, f"{where} phi(q) . sum phi(k) + eps")
    peak.at(base + (s + ks + 3 * q + r) * e, f"{where} normalise")
    return q * e


trace = vit_trace  # the registry reads every family module's `trace`
