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

from vitcost.analytic.cost import AttnCall, LinearAttnCall
from vitcost.analytic.ints import ceil_div, floor_div
from vitcost.analytic.liveness import LSE_BYTES, Attend, Call, Step, flash_scratch, linear_attention, timm_attention
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import PixelSpec, ViTSpec


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
    t.note(keep=f"{p}.attn")  # timm's qkv, referenced until the module returns
    if not modern.k_bias:  # the key's bias is a zero buffer added with the others (EVA), not a parameter
        op = t.ops[-1]
        t.ops[-1] = op._replace(cost=op.cost._replace(params=op.cost.params - dim))
    qkv = t.key()
    rel = rel_pos_tables(t, f"{p}.attn", dim // heads, *rel_grid) if rel_grid else ()
    if modern.rope:  # q and k of the patch tokens: [B, h, patches, d] each
        per, half = ROPE_FLOPS_PER_ELEMENT
        rotated = 2 * b * modern.rope * dim
        t.eltwise(f"{p}.attn", per * rotated + rotated // half, kind="rope", inp=rotated, out=rotated)
    prune = pruned is not None and pruned != n
    if linear:
        t.linear_attention(f"{p}.attn", b, heads, n, dim // heads)
    elif modern.topk:
        topk_attention(t, f"{p}.attn", b, heads, n, dim // heads, modern.topk, qkv)
    else:
        t.attention(f"{p}.attn", b, heads, n, n, dim // heads, rel=rel)
    if not modern.topk:
        module = "sam" if "folded_heads" in tags else "timm_rope" if modern.rope else "timm"
        t.note(*tags, src=(f"qkv={qkv}",), attend=module)
    t.linear(f"{p}.attn.proj", rows, dim, dim, role="proj")
    if modern.layer_scale:
        layer_scale(t, f"{p}.ls1", x, dim)
    t.eltwise(p, x)  # residual
    if prune:
        class_attention(t, f"{p}.attn", b, n, dim, heads)
        evit_fuse(t, p, b, n, pruned, dim, heads)
        rows = b * pruned
    channel_mlp(t, p, rows, dim, hidden, modern)


def class_attention(t: Trace, p: str, b: Any, n: Any, dim: int, heads: int) -> None:
    """EViT's ranking (nets.vit.class_attention), recorded after the residual add although the attention
    module `p` runs it before its attention (`cost.Mem.late`): the class token's scores, computed apart (a
    fused kernel never forms them), q_cls * scale and q_cls @ K^T (b*h*n*d MACs), softmax over the n keys,
    the mean over heads of the n - 1 patch columns."""
    d = dim // heads
    t.eltwise(p, b * heads * d, kind="mul", inp=b * heads * d)  # q_cls * scale
    t.note(late=True)
    t.matmul(p, b * heads, 1, d, n)
    t.note(late=True)
    t.softmax(p, b * heads * n)
    t.note(late=True)
    t.eltwise(p, b * heads * (n - 1), kind="rank", out=b * (n - 1))  # the mean over heads
    t.note(late=True)


def evit_fuse(t: Trace, p: str, b: Any, n: Any, left: Any, dim: int, heads: int) -> None:
    """EViT (Liang et al. 2022) between a block's attention and its MLP, n tokens in, `left` out (the class
    token, the k = left - 2 most attended patch tokens, their complement fused into one), after the ranking
    (`class_attention`): the ranking of the n - 1 patch tokens (one comparison each); gathers of the k kept
    tokens, of the r = n - 1 - k others and of their r scores; the fusion sum_j a_j x_j (a product and a sum
    per element); the concat of the left."""
    k = left - 2
    r = n - 1 - k
    with t.scope("evit_fuse"):  # the sum it is handed lives until it returns the concat, the new stream
        t.eltwise(p, b * (n - 1), kind="topk", inp=b * (n - 1))
        t.eltwise(p, b * (n - 1) * dim + b * r, kind="gather", inp=b * n * dim + b * (n - 1),
                  out=b * (n - 1) * dim + b * r)
        t.eltwise(p, 2 * b * r * dim, kind="fuse", inp=b * r * (dim + 1), out=b * dim)
        t.eltwise(p, b * left * dim, kind="concat", inp=b * left * dim)
        t.note(stream=True)


def topk_attention(t: Trace, p: str, b: Any, heads: int, n: Any, d: int, k: int, qkv: str) -> None:
    """Top-k attention (nets.vit.topk_attend) over n tokens, each query keeping its k best keys: q * scale,
    the full scores q K^T (n^2 d MACs per head; K a view of the op `qkv`'s output), the selection of k in
    each row (one comparison per score), softmax over the k, the gather of the k value rows of each query
    (n k d elements), their weighted sum (n k d MACs per head)."""
    if isinstance(n, int) and k > n:
        raise SpecError(f"ViTSpec.topk = {k} is more than the {n} keys its attention has here.")
    bh = b * heads
    with t.scope("topk_attend") as fn:  # its locals (scores, best, index, weights, rows) live until it returns
        t.eltwise(p, bh * n * d, kind="mul", inp=bh * n * d)  # q * scale
        scaled = t.key()
        t.matmul(p, bh, n, d, n)
        split = ("split_heads",) if not isinstance(b, int) or b > 1 and heads > 1 else ()
        # K^T: a view of qkv; the matmul copies both head-split operands
        t.note(*split, src=(qkv,), reads=(scaled,), keep=fn, temp=2 * bh * n * d if split else 0)
        t.eltwise(p, bh * n * n, kind="topk", inp=bh * n * n, out=bh * n * k)
        t.note(keep=fn, index=bh * n * k)  # the values and their int64 indices
        t.softmax(p, bh * n * k)
        t.note(keep=fn)
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
        t.note(temp=rows * hidden)  # SiLU(g), alive while it multiplies x
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
                   tags: tuple[str, ...] = (), swin: bool = False) -> None:
    """One pre-norm block attending inside wh x ww windows of a gh x gw grid zero-padded to multiples
    of the window (ViTDet; Swin without its shift): qkv, scores and proj on the padded grid, `terms`
    additive terms on the scores (Swin's bias and shift mask), decomposed relative positions within
    each window with `rel_pos` (SAM), linear attention within each window with `linear`, MLP on the
    unpadded grid; `tags` are facts about its attention (`cost.TAGS`). The window pass is timm's SAM block's
    (pad, partition; reverse, crop, each rebinding the block's x), or with `swin` timm's Swin block's `_attn`
    (`swin_window_pass`)."""
    hp, wp = padded(gh, wh), padded(gw, ww)
    windows = b * (hp // wh if isinstance(hp, int) else hp / wh) * (wp // ww if isinstance(wp, int) else wp / ww)
    x, xp = b * gh * gw * dim, b * hp * wp * dim
    view = isinstance(windows, int) and windows == b  # one window spans the grid: partition and reverse are views
    t.norm(f"{p}.norm1", b * gh * gw, dim)

    def attention() -> None:
        t.linear(f"{p}.attn.qkv", b * hp * wp, dim, 3 * dim, role="proj")
        t.note(keep=f"{p}.attn")  # referenced until the module returns
        qkv = t.key()
        rel = rel_pos_tables(t, f"{p}.attn", dim // heads, wh, ww) if rel_pos else ()
        if linear:
            t.linear_attention(f"{p}.attn", windows, heads, wh * ww, dim // heads)
        else:
            t.attention(f"{p}.attn", windows, heads, wh * ww, wh * ww, dim // heads, terms=terms, rel=rel)
        t.note(*tags, src=(f"qkv={qkv}",), attend="sam" if "folded_heads" in tags else "swin" if swin else "timm")
        t.linear(f"{p}.attn.proj", b * hp * wp, dim, dim, role="proj")

    if swin:
        swin_window_pass(t, p, x, xp, view, terms == 2, attention)
    else:
        with t.scope("window_partition"):  # timm's SAM: pad (a copy even when nothing is padded), then windows
            t.copy(p, xp, "pad")
            t.copy(p, xp, "window partition", view=view)
        attention()
        with t.scope("window_reverse"):  # window_reverse(x)[:, :h, :w].contiguous(): x alive to the end
            t.copy(p, xp, "window reverse", view=view)
            if not isinstance(xp, int) or xp != x:
                t.copy(p, x, "crop")
    t.eltwise(p, b * gh * gw * dim)  # residual
    t.note("branch_copied")  # the attention's output reaches it through the window reverse (and crop)
    channel_mlp(t, p, b * gh * gw, dim, hidden)


def swin_window_pass(t: Trace, p: str, x: Any, xp: Any, view: bool, shifted: bool, attention: Any) -> None:
    """timm's SwinTransformerBlock._attn on norm1's output (x elements; xp on the padded grid), which the
    caller holds until it returns: shifted_x = roll(x) (shifted blocks); shifted_x = pad(shifted_x) (a copy
    even when nothing is padded); x_windows = partition(shifted_x) (a copy unless one window spans the grid,
    `view`); attn_windows = attention(x_windows) (`attention()` records it); shifted_x = reverse(attn_windows)
    (freeing the padded grid); shifted_x = crop(shifted_x).contiguous() when padded; x = roll(shifted_x).
    x_windows and attn_windows are locals to the return."""
    with t.scope("swin_attn") as fn:
        if shifted:
            t.copy(p, x, "roll")
        pad = t.copy(p, xp, "pad")
        t.copy(p, xp, "window partition", view=view, keep=fn)
        attention()
        t.note(keep=fn)
        t.copy(p, xp, "window_reverse", view=view, rebinds=(pad,))
        if not isinstance(xp, int) or xp != x:
            t.copy(p, x, "crop")
        if shifted:
            t.copy(p, x, "roll back")


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
    t.note(scratch=("conv", "conv", 1, b, True))  # the convs read channels-last views
    t.norm("neck.1", b * gh * gw, channels)
    t.conv("neck.2", b, channels, channels, gh, gw, kernel=3, stride=1, pad=1, bias=False, role="head")
    t.note(scratch=("conv", "conv", 1, b, True))
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
# Memory: the attention modules of timm's EVA and SAM (`liveness`)


def timm_rope_attention(c: Call) -> Attend:
    """timm's EVA attention: `timm_attention` on q and k rotated by RoPE (new tensors, each as large as q):
    the rotated k stays referenced until the module returns, and so does the rotated q on the fused path
    (on the math path the scaled q replaces it)."""
    a, e = c.op.call, c.e
    at = timm_attention(c)
    rotated = (2 if c.fused else 1) * a.q * e
    return Attend([Step(st.name, st.nbytes + rotated, st.scratch) for st in at.steps], at.kept + rotated, at.out)


def sam_attention(c: Call) -> Attend:
    """timm's SAM Attention (nets.vit.Attention with fold_heads): qkv reshaped to q, k, v of [B'*h, N, d]
    (a copy of all of qkv when B' > 1 and h > 1, otherwise views the batched matmuls read as they are),
    referenced until the module returns; the decomposed relative-position bias (`sam_rel_pos`), kept to
    the end; math: the scaled q and the softmax output kept to the end; fused: the kernel's output and
    log-sum-exp. Merging the heads copies the [B'*h, N, d] output when h > 1."""
    a, e = c.op.call, c.e
    q = a.q * e
    fold = 3 * q if a.batch > 1 and a.heads > 1 else 0
    merge = q + (q if a.heads > 1 else 0)
    if isinstance(a, LinearAttnCall):
        steps = [Step(st.name, fold + st.nbytes) for st in linear_attention(a, e, split=False)]
        return Attend([*steps, Step("merge heads", fold + merge)], fold, q)
    s = a.scores * e
    steps = sam_rel_pos(a, e, fold, folded=bool(fold)) if a.rel else []
    pre = fold + (s if a.rel else 0)
    if c.fused:
        steps.append(Step("fused attention", pre + q + a.rows * LSE_BYTES, flash_scratch(c.peak, a, e)))
        kept = pre
    else:
        steps += [Step("q @ k^T", pre + q + s), Step("softmax", pre + q + 2 * s), Step("scores @ v", pre + 2 * q + s)]
        kept = pre + q + s
    return Attend([*steps, Step("merge heads", kept + merge)], kept, q)


def sam_rel_pos(a: AttnCall, e: int, base: int, *, folded: bool) -> list[Step]:
    """nets.vit.decomposed_rel_pos (timm's get_decomposed_rel_pos_bias), `base` bytes held by the module:
    gather R_h [gh, gh, d] and R_w [gw, gw, d]; rel_h = einsum(q, R_h) reads q with its h axis first and
    rel_w = einsum(q, R_w) with its w axis first, each a copy of q unless that is a view
    (`nets.mvit._einsum_axis`: for a contiguous q, the h product when B'*h > 1 and both axes are longer than
    1; for q a strided view of qkv, the h product when h > 1 and gw > 1 (or B' > 1 with one head and both
    axes longer than 1) and the w product when h > 1 and gh > 1); then rel_h + rel_w broadcast to the
    [B'*h, gh, gw, gh, gw] sum, laid out like rel_h, so that reshaping it to the [B'*h, N, N] bias copies
    when B'*h > 1. R_h and R_w stay referenced until the bias is returned."""
    gh, gw = a.rel[0], a.rel[1]
    bh, d = a.batch * a.heads, a.head_dim
    rel_h, rel_w = bh * gh * gw * gh * e, bh * gh * gw * gw * e
    both = gh > 1 and gw > 1
    if folded or a.heads == 1:
        copy_h, copy_w = a.q * e if bh > 1 and both else 0, 0
    else:  # one image, several heads: q [h, N, d] strided in qkv
        copy_h, copy_w = a.q * e if gw > 1 else 0, a.q * e if gh > 1 else 0
    tables = base + (gh * gh + gw * gw) * d * e
    copy = a.scores * e if bh > 1 and gh > 1 else 0
    return [Step("rel_pos h", tables + copy_h + rel_h), Step("rel_pos w", tables + rel_h + copy_w + rel_w),
            Step("rel_pos bias", tables + rel_h + rel_w + a.scores * e + copy)]


ATTENTION = {"timm_rope": timm_rope_attention, "sam": sam_attention}  # the engine's programs (`liveness`)


trace = vit_trace  # the registry reads every family module's `trace`
