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

from typing import Any, NamedTuple

from vitcost.analytic.cost import LinearAttnCall
from vitcost.analytic.ints import ceil_div, floor_div
from vitcost.analytic.peaks import (
    LSE_BYTES,
    STAT_BYTES,
    Block,
    PeakSteps,
    conv_scratch,
    flash_scratch,
    kept_scores_attention,
    mlp,
    norm_stats,
)
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import PixelSpec, ViTSpec
from vitcost.vocab import INT64


def rel_pos_tables(t: Trace, p: str, head_dim: int, gh: Any, gw: Any) -> tuple:
    """The decomposed relative-position tables of an attention over a gh x gw grid (2*size-1 rows of
    head_dim per axis) and the `rel` grids (qh, qw, kh, kw) of its attention record."""
    t.param(f"{p}.rel_pos_h", (2 * gh - 1) * head_dim)
    t.param(f"{p}.rel_pos_w", (2 * gw - 1) * head_dim)
    return (gh, gw, gh, gw)


class Modern(NamedTuple):
    """A plain ViT block's modern options (ViTSpec's fields of the same names; `rope` is the number of
    patch tokens q and k rotate, 0 for none)."""

    layer_scale: bool = False
    swiglu: bool = False
    mlp_norm: bool = False
    k_bias: bool = True
    rope: Any = 0
    topk: int = 0

    @classmethod
    def of(cls, spec: ViTSpec | PixelSpec, patches: Any) -> Modern:
        return cls(spec.layer_scale, spec.mlp == "swiglu", spec.mlp_norm, spec.k_bias, patches if spec.rope else 0,
                   spec.topk)


PLAIN = Modern()
ROPE_FLOPS_PER_ELEMENT = (3, 2)  # x * cos + rot(x) * sin: two products and a sum, and rot negates half of x
GLU_FLOPS = 3  # SiLU(g) * x per hidden unit: the sigmoid, the product with g, the product with x


def transformer_block(t: Trace, p: str, b: Any, n: Any, dim: int, heads: int, hidden: int, *,
                      rel_grid: tuple = (), linear: bool = False, tags: tuple[str, ...] = (),
                      modern: Modern = PLAIN, pruned: Any = None) -> None:
    """One pre-norm global-attention block over n tokens of width dim, path prefix `p`; with `rel_grid`
    (gh, gw) the n = gh*gw tokens get decomposed relative positions; `linear`: linear attention; `tags`:
    facts about its attention (`cost.TAGS`); `modern`: layer scale, SwiGLU, no key bias, RoPE; `pruned`:
    the tokens EViT leaves for the MLP (`evit_fuse`), None for no pruning."""
    rows, x = b * n, b * n * dim
    t.norm(f"{p}.norm1", rows, dim)
    t.linear(f"{p}.attn.qkv", rows, dim, 3 * dim, role="proj")
    if not modern.k_bias:  # the key's bias is a zero buffer added with the others (EVA), not a parameter
        op = t.ops[-1]
        t.ops[-1] = op._replace(cost=op.cost._replace(params=op.cost.params - dim))
    qkv = t.key()
    rel = rel_pos_tables(t, f"{p}.attn", dim // heads, *rel_grid) if rel_grid else ()
    if modern.rope:  # q and k of the patch tokens: [B, h, patches, d] each
        per, half = ROPE_FLOPS_PER_ELEMENT
        rotated = 2 * b * modern.rope * dim
        t.eltwise(f"{p}.attn", per * rotated + rotated // half, kind="rope", inp=rotated, out=rotated)
    if linear:
        t.linear_attention(f"{p}.attn", b, heads, n, dim // heads)
    elif modern.topk:
        topk_attention(t, f"{p}.attn", b, heads, n, dim // heads, modern.topk, qkv)
    else:
        t.attention(f"{p}.attn", b, heads, n, n, dim // heads, rel=rel)
    if not modern.topk:
        t.note(*tags, src=(f"qkv={qkv}",))
    t.linear(f"{p}.attn.proj", rows, dim, dim, role="proj")
    if modern.layer_scale:
        layer_scale(t, f"{p}.ls1", x, dim)
    t.eltwise(p, x)  # residual
    if pruned is not None and pruned != n:
        evit_fuse(t, p, b, n, pruned, dim, heads)
        rows = b * pruned
    channel_mlp(t, p, rows, dim, hidden, modern)


def evit_fuse(t: Trace, p: str, b: Any, n: Any, left: Any, dim: int, heads: int) -> None:
    """EViT (Liang et al. 2022) between a block's attention and its MLP, n tokens in, `left` out (the class
    token, the k = left - 2 most attended patch tokens, their complement fused into one): the class
    token's scores, computed apart (a fused kernel never forms them), q_cls * scale and q_cls @ K^T (b*h*n*d
    MACs), softmax over the n keys, the mean over heads of the n - 1 patch columns; the ranking of the
    n - 1 patch tokens (one comparison each); gathers of the k kept tokens, of the r = n - 1 - k others and
    of their r scores; the fusion sum_j a_j x_j (a product and a sum per element); the concat of the left."""
    d = dim // heads
    k = left - 2
    r = n - 1 - k
    t.eltwise(f"{p}.attn", b * heads * d, kind="mul", inp=b * heads * d)  # q_cls * scale
    t.matmul(f"{p}.attn", b * heads, 1, d, n)
    t.softmax(f"{p}.attn", b * heads * n)
    t.eltwise(f"{p}.attn", b * heads * (n - 1), kind="rank", out=b * (n - 1))  # the mean over heads
    t.eltwise(p, b * (n - 1), kind="topk", inp=b * (n - 1))
    t.eltwise(p, b * (n - 1) * dim + b * r, kind="gather", inp=b * n * dim + b * (n - 1),
              out=b * (n - 1) * dim + b * r)
    t.eltwise(p, 2 * b * r * dim, kind="fuse", inp=b * r * (dim + 1), out=b * dim)
    t.eltwise(p, b * left * dim, kind="concat", inp=b * left * dim)


def topk_attention(t: Trace, p: str, b: Any, heads: int, n: Any, d: int, k: int, qkv: str) -> None:
    """Top-k attention (nets.vit.topk_attend) over n tokens, each query keeping its k best keys: q * scale,
    the full scores q K^T (n^2 d MACs per head; K a view of the op `qkv`'s output), the selection of k in
    each row (one comparison per score), softmax over the k, the gather of the k value rows of each query
    (n k d elements), their weighted sum (n k d MACs per head)."""
    if isinstance(n, int) and k > n:
        raise SpecError(f"ViTSpec.topk = {k} is more than the {n} keys its attention has here.")
    bh = b * heads
    t.eltwise(p, bh * n * d, kind="mul", inp=bh * n * d)  # q * scale
    t.matmul(p, bh, n, d, n)
    split = ("split_heads",) if not isinstance(b, int) or b > 1 and heads > 1 else ()
    t.note(*split, src=(qkv,))  # K^T: a view of qkv
    t.eltwise(p, bh * n * n, kind="topk", inp=bh * n * n, out=bh * n * k)
    t.softmax(p, bh * n * k)
    t.eltwise(p, bh * n * k * d, kind="gather", inp=bh * n * k * d)
    t.matmul(p, bh * n, 1, k, d)


def layer_scale(t: Trace, p: str, x: Any, dim: int) -> None:
    """x * gamma, gamma a learned per-channel vector (timm's LayerScale)."""
    t.param(f"{p}.gamma", dim, role="mlp")
    t.eltwise(p, x, kind="scale", inp=x)


def channel_mlp(t: Trace, p: str, rows: Any, dim: int, hidden: int, modern: Modern = PLAIN) -> None:
    """x + fc2(GELU(fc1(norm2(x)))) over `rows` tokens; SwiGLU: x + fc2(SiLU(g) * h), [g | h] = fc1(norm2(x))
    of 2 x hidden outputs; `mlp_norm`: a LayerNorm on the hidden units before fc2; layer scale before the add."""
    t.norm(f"{p}.norm2", rows, dim)
    if modern.swiglu:
        t.linear(f"{p}.mlp.fc1", rows, dim, 2 * hidden, role="mlp")
        t.eltwise(f"{p}.mlp.act", GLU_FLOPS * rows * hidden, kind="glu", role="mlp", inp=2 * rows * hidden,
                  out=rows * hidden)
    else:
        t.linear(f"{p}.mlp.fc1", rows, dim, hidden, role="mlp")
        t.gelu(f"{p}.mlp.act", rows * hidden)
    if modern.mlp_norm:
        t.norm(f"{p}.mlp.norm", rows, hidden)
    t.linear(f"{p}.mlp.fc2", rows, hidden, dim, role="mlp")
    if modern.layer_scale:
        layer_scale(t, f"{p}.ls2", rows * dim, dim)
    t.eltwise(p, rows * dim)  # residual


def padded(size: Any, window: int) -> Any:
    """`size` rounded up to a multiple of `window` (the zero padding of a windowed block)."""
    return ceil_div(size, window) * window


def windowed_block(t: Trace, p: str, b: Any, gh: Any, gw: Any, dim: int, heads: int, hidden: int,
                   wh: int, ww: int, *, terms: int = 0, rel_pos: bool = False, linear: bool = False,
                   tags: tuple[str, ...] = ()) -> None:
    """One pre-norm block attending inside wh x ww windows of a gh x gw grid zero-padded to multiples
    of the window (ViTDet; Swin without its shift): qkv, scores and proj on the padded grid, `terms`
    additive terms on the scores (Swin's bias and shift mask), decomposed relative positions within
    each window with `rel_pos` (SAM), linear attention within each window with `linear`, MLP on the
    unpadded grid; `tags` are facts about its attention (`cost.TAGS`)."""
    hp, wp = padded(gh, wh), padded(gw, ww)
    windows = b * (hp // wh if isinstance(hp, int) else hp / wh) * (wp // ww if isinstance(wp, int) else wp / ww)
    t.norm(f"{p}.norm1", b * gh * gw, dim)
    t.linear(f"{p}.attn.qkv", b * hp * wp, dim, 3 * dim, role="proj")
    qkv = t.key()
    rel = rel_pos_tables(t, f"{p}.attn", dim // heads, wh, ww) if rel_pos else ()
    if linear:
        t.linear_attention(f"{p}.attn", windows, heads, wh * ww, dim // heads)
    else:
        t.attention(f"{p}.attn", windows, heads, wh * ww, wh * ww, dim // heads, terms=terms, rel=rel)
    t.note(*tags, src=(f"qkv={qkv}",))
    t.linear(f"{p}.attn.proj", b * hp * wp, dim, dim, role="proj")
    t.eltwise(p, b * gh * gw * dim)  # residual
    t.note("branch_copied")  # the attention's output reaches it through the window reverse (and crop)
    channel_mlp(t, p, b * gh * gw, dim, hidden)


def embed(t: Trace, spec: ViTSpec | PixelSpec, h: Any, w: Any, b: Any, frames: Any) -> tuple[Any, Any, Any]:
    """The patch embedding: a stride-P conv of an image, or of a clip of `frames` frames a Conv3d of kernel
    and stride tubelet x P x P (ViViT's tubelet embedding); returns the token grid (tubelets, gh, gw)."""
    tub = getattr(spec, "tubelet", 1)
    if frames == 1 and tub == 1:
        gh, gw = t.conv("patch_embed.proj", b, spec.in_chans, spec.dim, h, w, kernel=spec.patch,
                        stride=spec.patch, pad=0, role="embed")
        return 1, gh, gw
    if isinstance(frames, int) and frames % tub:
        what = "an image (one frame)" if frames == 1 else f"a clip of {frames} frames"
        raise SpecError(f"ViTSpec.tubelet = {tub} does not divide the frames of {what}: give T a multiple of {tub}.")
    grid3 = t.conv3d("patch_embed.proj", b, spec.in_chans, spec.dim, (frames, h, w), kernel=(tub, spec.patch,
                     spec.patch), stride=(tub, spec.patch, spec.patch), pad=(0, 0, 0), role="embed")
    flat = ("window", spec.window), ("rel_pos", spec.rel_pos), ("neck", spec.neck), ("rope", spec.rope)
    used = [name for name, on in flat if on]
    if used and (not isinstance(grid3[0], int) or grid3[0] > 1):
        raise SpecError(f"ViTSpec.{used[0]} works on one frame's token grid: a clip of {frames} frames in "
                        f"tubelets of {tub} has several; give an image, or T = tubelet.")
    return grid3


def vit_trace(spec: ViTSpec | PixelSpec, h: Any, w: Any, b: Any, frames: Any = 1) -> Trace:
    """The forward on [b, C, h, w], or on a clip [b, C, frames, h, w] (`embed`)."""
    t = Trace(b)
    d = spec.dim
    gt, gh, gw = embed(t, spec, h, w, b, frames)
    patches = gt * gh * gw
    n = patches + spec.prefix_tokens
    if spec.distilled:  # DeiT: a class token and a distillation token
        t.param("cls_token", d)
        t.param("dist_token", d)
    elif spec.class_tokens:
        t.param("cls_token", spec.class_tokens * d)
    if spec.reg_tokens:
        t.param("reg_token", spec.reg_tokens * d)
    if spec.pos_embed:
        rows = patches if spec.reg_tokens else n  # with register tokens only the patches get a row (timm)
        t.param("pos_embed", rows * d)
        t.eltwise("", b * rows * d)  # + pos_embed, in the model's own forward
    # timm's SAM blocks fold the heads into the batch: q, k, v are views of qkv as [3, B'*h, N, d]
    sam = ("folded_heads",) if spec.window or spec.rel_pos or spec.neck else ()
    modern = Modern.of(spec, patches)
    for i in range(spec.depth):
        win = spec.block_window(i)
        with t.block(f"blocks.{i}", "", b * n * d):
            if win:
                windowed_block(t, f"blocks.{i}", b, gh, gw, d, spec.heads, spec.mlp_hidden, win, win,
                               rel_pos=spec.rel_pos, linear=spec.attention == "linear", tags=sam)
            else:
                left = spec.tokens_after(i, n) if spec.prune_blocks else None
                transformer_block(t, f"blocks.{i}", b, n, d, spec.heads, spec.mlp_hidden,
                                  rel_grid=(gh, gw) if spec.rel_pos else (), linear=spec.attention == "linear",
                                  tags=sam, modern=modern, pruned=left)
                if left is not None:
                    n = left
    if isinstance(spec, PixelSpec):
        t.norm("norm", b * n, d)
        t.linear("head", b * n, d, spec.vocab, role="head")  # a palette logit per pixel
        return t
    if spec.fc_norm:  # pool, then the norm on the pooled token (timm's fc_norm), which runs without a head too
        pool(t, spec, b, patches)
        t.norm("fc_norm", b, d)
        if spec.num_classes:
            t.linear("head", b, d, spec.num_classes, role="head")
        return t
    if spec.neck:
        d, n = neck(t, b, d, spec.neck, gh, gw), gh * gw
    else:
        t.norm("norm", b * n, d)
    if spec.num_classes:
        pool(t, spec, b, patches)
        t.linear("head", b, d, spec.num_classes, role="head")  # on the class token or the mean
        if spec.distilled:  # DeiT: head_dist on the distillation token, (head + head_dist) / 2
            t.linear("head_dist", b, d, spec.num_classes, role="head")
            t.eltwise("", 2 * b * spec.num_classes)
    return t


def pool(t: Trace, spec: ViTSpec, b: Any, patches: Any) -> None:
    """The head's input: class token 0 (nothing to compute), or the mean of the patch tokens (or of the
    neck's grid, one per patch), the prefix tokens left out."""
    if spec.pool == "avg":
        t.eltwise("", b * spec.dim, kind="pool", inp=b * patches * spec.dim)


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


def time_grid(spec: ViTSpec | PixelSpec, frames: Any) -> Any:
    """Tubelets along the time axis: T / tubelet."""
    return floor_div(frames, getattr(spec, "tubelet", 1))


def lattice(spec: ViTSpec | PixelSpec) -> tuple[int, int]:
    """Resolutions on multiples of the patch (times the window, for windowed blocks) round nowhere."""
    return spec.patch * max(spec.window, 1), spec.patch


def rounded(spec: ViTSpec | PixelSpec) -> bool:
    """Token pruning keeps ceil(keep_rate * N) tokens, a step function of R on any lattice."""
    return bool(getattr(spec, "prune_blocks", ()))


EVIT_KEEP = 0.7  # EViT's DeiT-S setting: keep rate 0.7 at blocks 4, 7 and 10 of 12
EVIT_BLOCKS = (4, 7, 10)
TOPK_FRACTION = 4  # top-k sparse attention keeps a quarter of the keys of the block with the fewest tokens


def sparsity_variants(spec: ViTSpec | PixelSpec, tokens: int) -> list[tuple[str, Any]]:
    """`savings`' attention-sparsity rows for this design (`tokens` patch tokens), each a spec or the
    reason it does not apply: EViT's token pruning (keep rate 0.7 at the blocks at 4/12, 7/12 and 10/12
    of the depth, 1-based: DeiT-S's 4, 7, 10) and top-k sparse attention (each query keeps a quarter of
    the keys of the block with the fewest tokens)."""
    from dataclasses import replace

    if isinstance(spec, PixelSpec):
        reason = "the pixel family has no token pruning or top-k option"
        return [("token pruning (EViT)", reason), ("top-k sparse attention", reason)]
    out: list[tuple[str, Any]] = []
    blocks = tuple(sorted({max(1, round(spec.depth * b / 12)) for b in EVIT_BLOCKS}))
    try:
        out.append(("token pruning (EViT)", "the design already prunes tokens" if spec.prune_blocks else
                    replace(spec, prune_blocks=blocks, keep_rate=EVIT_KEEP)))
    except SpecError as err:
        out.append(("token pruning (EViT)", str(err)))
    n = tokens + spec.prefix_tokens
    fewest = n
    for i in range(spec.depth):
        n = spec.tokens_after(i, n)
        fewest = min(fewest, n)
    try:
        out.append(("top-k sparse attention", "the design already keeps the top-k keys" if spec.topk else
                    replace(spec, topk=max(1, -(-fewest // TOPK_FRACTION)))))
    except SpecError as err:
        out.append(("top-k sparse attention", str(err)))
    return out


def clip_complexity(spec: ViTSpec | PixelSpec) -> str:
    """The class on a clip of T frames: (T/t)(R/P)^2 tokens, t the tubelet, all pairs attend."""
    if getattr(spec, "attention", "softmax") == "linear":
        return "O(THW·C·d)"
    return "O((T/t)^2 R^4/P^4)"


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
    """nets.vit.Block, as timm's: x = x + attn(norm1(x)); x = x + mlp(norm2(x)). `outer`: the embedded
    tokens, which the nn.Sequential of blocks keeps referenced while blocks 1.. run. A plain ViT's
    attention (`peaks.kept_scores_attention`) keeps qkv, the scaled q and the softmax output to its end
    (with RoPE also the rotated k, and the rotated q on the fused path); a model with windows, relative
    positions or a neck runs timm's SAM block (`sam_block_memory`); linear
    attention replaces the core (`linear_attention_memory`). Block 0 also holds the embedding: the patch
    tokens (a view of the conv output, kept by the caller while the prefix tokens are concatenated) and
    the concat when there are prefix tokens, and + pos_embed (before the concat with registers); the last
    block of a model with a neck also holds the neck's steps (`neck_memory`); an EViT block's MLP runs on
    the tokens its fusion leaves."""
    x = blk.out("norm1")
    a = blk.attention()
    proj = blk.out("attn.proj")
    if blk.index == 0 and spec.prefix_tokens:
        patches = x - b * spec.prefix_tokens * spec.dim  # the patch tokens, before the concat
        # concat then + pos_embed; with registers + pos_embed on the patches, then the concat
        added = (patches if spec.reg_tokens else x) if spec.pos_embed else 0
        peak.at((patches + x + added) * e, "pos_embed")
    if spec.window or spec.rel_pos or spec.neck:
        sam_block_memory(peak, blk, spec, b, e, fused, outer)
        if spec.neck and blk.index == spec.depth - 1:
            neck_memory(peak, x, spec, b, e)
        return
    base = outer + (2 * x + blk.out("attn.qkv")) * e  # block input, norm1 output, qkv
    if a is None:  # top-k attention
        topk_attention_memory(peak, blk, base, b, spec.heads, e, proj)
    elif isinstance(a, LinearAttnCall):
        o = linear_attention_memory(peak, f"{blk.p}.attn", base, a, e, split=a.batch > 1 and a.heads > 1)
        merge = o if a.heads > 1 else 0  # the [B', h, N, d] output merged back to [B', N, D]
        peak.at(base + o + merge, f"{blk.p} attn merge heads")
        peak.at(base + (merge or o) + proj * e, f"{blk.p} attn.proj")
    else:
        # RoPE's rotated k stays referenced through the attention (the rotated q too, on the fused path;
        # the math path's scaled q replaces it)
        rotated = (2 if fused else 1) * a.q * e if spec.rope else 0
        kept_scores_attention(peak, f"{blk.p}.attn", base + rotated, a, e, fused=fused, proj=proj)
    peak.at(outer + (2 * x + proj) * e, f"{blk.p} residual")  # block input, the attention output, the sum
    left = blk.out("", "concat")
    if left:  # EViT (nets.vit.evit_fuse): the gathers, the weighted others, then the concat; they die on return
        gathered, others = blk.out("", "gather"), blk.find("", "fuse").inp
        peak.at(outer + (2 * x + gathered + others) * e, f"{blk.p} evit fuse")
        peak.at(outer + (2 * x + gathered + left) * e, f"{blk.p} evit concat")
        mlp(peak, blk.p, outer + (x + left) * e, left, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)
        return
    mlp(peak, blk.p, outer + 2 * x * e, x, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)  # input, x + attn


def topk_attention_memory(peak: PeakSteps, blk: Block, base: int, b: int, heads: int, e: int, proj: int) -> None:
    """nets.vit.topk_attend inside nets.vit.Attention, `base` bytes alive (qkv included): q * scale (and,
    when B > 1 and h > 1, the contiguous copies matmul makes of the head-split q and k), the scores; the
    top k of each row with their int64 indices; their softmax; the gathered value rows; the weighted sum.
    Its temporaries die on return; merging the heads copies the output, then proj."""
    where = f"{blk.p}.attn"
    q = blk.out("attn", "mul")
    s, sel, rows = blk.out("attn", "matmul"), blk.out("attn", "topk"), blk.out("attn", "gather")
    split = q if b > 1 and heads > 1 else 0
    peak.at(base + (2 * q + split) * e, f"{where} q * scale")
    peak.at(base + (q + 2 * split + s) * e, f"{where} q @ k^T")
    peak.at(base + (s + 2 * sel) * e + sel * INT64, f"{where} topk")
    peak.at(base + (s + 2 * sel) * e + sel * INT64, f"{where} softmax")
    peak.at(base + (s + 2 * sel + rows) * e + sel * INT64, f"{where} gather")
    peak.at(base + (s + 2 * sel + rows + q) * e + sel * INT64, f"{where} weights @ rows")
    merge = q if heads > 1 else 0
    peak.at(base + (q + merge) * e, f"{where} merge heads")
    peak.at(base + ((merge or q) + proj) * e, f"{where}.proj")


def sam_block_memory(peak: PeakSteps, blk: Block, spec: ViTSpec | PixelSpec, b: int, e: int, fused: bool,
                     outer: int) -> None:
    """nets.vit.Block._sam (timm's SAM Block): shortcut = x; x = norm1(x); [x = partition(pad(x))];
    x = attn(x); [x = crop(reverse(x))]; x = shortcut + x; x = x + mlp(norm2(x)), each step rebinding x.
    A windowed block pads norm1's output (a copy even when nothing is padded) and partitions it (a copy
    unless one window spans the grid, when the partition is a view of the padded grid): norm1's output
    dies then, and the attention runs with the block input and the padded grid's worth of windows alive.
    The attention is `sam_attention_memory`; reversing its output copies unless one window spans the
    grid, cropping copies when padded."""
    x = blk.out("norm1")
    a = blk.attention()
    proj = blk.out("attn.proj")
    stats = norm_stats(blk.find("norm1"))
    peak.at(outer + 2 * x * e + stats, f"{blk.p}.norm1")
    if spec.block_window(blk.index):
        xp = blk.out("attn.qkv") // 3  # the padded grid: qkv runs on every padded token
        copy = xp if a.batch > b else 0  # the partition and the reverse are views when a window spans the grid
        peak.at(outer + (2 * x + xp + copy) * e, f"{blk.p} window partition")
        sam_attention_memory(peak, blk, outer + (x + xp) * e, b, e, fused)
        peak.at(outer + (x + proj + copy) * e, f"{blk.p} window reverse")
        if xp != x:
            peak.at(outer + (x + proj + copy + x) * e, f"{blk.p} crop")
    else:
        sam_attention_memory(peak, blk, outer + 2 * x * e, b, e, fused)
    peak.at(outer + 3 * x * e, f"{blk.p} residual")  # shortcut, the attention output, the sum
    mlp(peak, blk.p, outer + 2 * x * e, x, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)


def sam_attention_memory(peak: PeakSteps, blk: Block, base: int, b: int, e: int, fused: bool) -> None:
    """nets.vit.Attention with fold_heads (timm's SAM Attention), `base` bytes alive: qkv (referenced to
    the end) reshaped to q, k, v of [B*h, N, d] (a copy of all of qkv when B' > 1 and h > 1, otherwise
    views that the batched matmuls read as they are); the relative-position bias (`sam_rel_pos_memory`),
    kept to the end; math: the scaled q and the softmax output kept to the end; fused: the kernel's
    output and log-sum-exp. Merging the heads copies the [B*h, N, d] output when h > 1."""
    a = blk.attention()
    p = f"{blk.p}.attn"
    qkv = blk.out("attn.qkv")
    split = a.batch > 1 and a.heads > 1
    base += (qkv + (qkv if split else 0)) * e
    q = a.q * e
    if isinstance(a, LinearAttnCall):
        o = linear_attention_memory(peak, p, base, a, e, split=False)
        merge = q if a.heads > 1 else 0
        peak.at(base + o + merge, f"{p} merge heads")
        peak.at(base + (merge or o) + blk.out("attn.proj") * e, f"{p}.proj")
        return
    s = a.scores * e
    if fused:
        if a.rel:
            sam_rel_pos_memory(peak, p, base, a, e, folded=split)
            base += s
        peak.at(base + q + a.rows * LSE_BYTES, f"{p} fused attention", flash_scratch(peak, a, e))
        o = q
    else:
        if a.rel:
            sam_rel_pos_memory(peak, p, base, a, e, folded=split)
            base += s
        peak.at(base + q + s, f"{p} q @ k^T")
        peak.at(base + q + 2 * s, f"{p} softmax")  # and + bias
        peak.at(base + q + s + q, f"{p} scores @ v")
        base += q + s  # the scaled q and the softmax output
        o = q
    merge = q if a.heads > 1 else 0
    peak.at(base + o + merge, f"{p} merge heads")
    peak.at(base + (merge or o) + blk.out("attn.proj") * e, f"{p}.proj")


def sam_rel_pos_memory(peak: PeakSteps, where: str, base: int, a: Any, e: int, *, folded: bool) -> None:
    """nets.vit.decomposed_rel_pos (timm's get_decomposed_rel_pos_bias), `base` bytes alive: gather R_h
    [gh, gh, d] and R_w [gw, gw, d]; rel_h = einsum(q, R_h) reads q with its h axis first and rel_w =
    einsum(q, R_w) with its w axis first, each a copy of q unless that is a view (`nets.mvit._einsum_axis`:
    for a contiguous q, the h product when B*h > 1 and both axes are longer than 1; for q a strided view
    of qkv, the h product when h > 1 and gw > 1 (or B > 1 with one head and both axes longer than 1) and
    the w product when h > 1 and gh > 1); then rel_h + rel_w broadcast to the [B*h, gh, gw, gh, gw] sum,
    laid out like rel_h, so that reshaping it to the [B*h, N, N] bias copies when B*h > 1. R_h and R_w
    stay referenced until the bias is returned."""
    gh, gw = a.rel[0], a.rel[1]
    bh, heads, d = a.batch * a.heads, a.heads, a.head_dim
    tab_h, tab_w = gh * gh * d, gw * gw * d
    rel_h, rel_w = bh * gh * gw * gh, bh * gh * gw * gw
    both = gh > 1 and gw > 1
    if folded or heads == 1:
        copy_h, copy_w = a.q if bh > 1 and both else 0, 0
    else:  # one image, several heads: q [h, N, d] strided in qkv
        copy_h, copy_w = a.q if gw > 1 else 0, a.q if gh > 1 else 0
    tables = tab_h + tab_w  # referenced until the function returns
    peak.at(base + (tables + copy_h + rel_h) * e, f"{where} rel_pos h")
    peak.at(base + (tables + rel_h + copy_w + rel_w) * e, f"{where} rel_pos w")
    # the sum is laid out like rel_h, the h product's permuted output: reshaping it to [B*h, N, N] copies
    copy = a.scores if bh > 1 and gh > 1 else 0
    peak.at(base + (tables + rel_h + rel_w + a.scores + copy) * e, f"{where} rel_pos bias")


def neck_memory(peak: PeakSteps, x: int, spec: ViTSpec | PixelSpec, b: int, e: int) -> None:
    """SAM's neck (nets.vit.sam_neck, timm's) on the blocks' output x, which the caller keeps: a 1x1 conv
    D -> C_n, LayerNorm2d, a 3x3 conv, LayerNorm2d, each rebinding inside the nn.Sequential. The convs read
    channels-last views (`peaks.conv_scratch`)."""
    c = x // spec.dim * spec.neck  # [B, C_n, gh, gw]
    w0, w2 = spec.dim * spec.neck, spec.neck * spec.neck * 9
    stats = 2 * (c // spec.neck) * STAT_BYTES
    peak.at((x + c) * e, "neck.0", conv_scratch(peak, "conv", x, c, w0, e, images=b, channels_last=True))
    peak.at((x + 2 * c) * e + stats, "neck.1")
    peak.at((x + 2 * c) * e, "neck.2", conv_scratch(peak, "conv", c, c, w2, e, images=b, channels_last=True))
    peak.at((x + 2 * c) * e + stats, "neck.3")


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
