"""Swin Transformer walker (Liu et al. 2021) and the memory of window attention blocks.

Per block on an h x w grid of width C with window M (Swin Eq. 2, softmax omitted):
    Omega(W-MSA) = 4hwC^2 + 2 M^2 hw C
When the grid does not divide the window it is zero-padded after norm1 to multiples of M, and the
attention (qkv, scores, proj) runs on the padded grid; the MLP runs on the unpadded one. Like the
reference implementation, a stage whose grid is no larger than the window uses the grid as window
and no shift. Shifted blocks add the attention mask to the scores; all blocks add the relative
position bias. Patch merging pads odd grids to even, concatenates 2x2 neighbours (4C), norms and
projects to 2C without bias.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import ceil_div
from vitcost.analytic.peaks import Block, PeakSteps, attend, mlp
from vitcost.analytic.trace import Trace
from vitcost.analytic.transformer import windowed_block
from vitcost.errors import SpecError
from vitcost.specs import SwinSpec


def window_and_shift(size: Any, window: int) -> tuple[Any, Any]:
    """Window and shift along one axis: the grid itself, unshifted, when it fits in one window."""
    if isinstance(size, int) and size <= window:
        return size, 0
    return window, window // 2


def swin_trace(spec: SwinSpec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    c = spec.embed_dim
    gh, gw = t.conv("patch_embed.proj", b, spec.in_chans, c, h, w, kernel=spec.patch, stride=spec.patch,
                    pad=0, role="embed")
    if isinstance(gh, int) and (gh < spec.window or gw < spec.window):
        raise SpecError(f"window {spec.window} is larger than the {gh}x{gw} token grid of the first stage "
                        f"at {h}x{w}; use a larger resolution or a smaller window.")
    t.norm("patch_embed.norm", b * gh * gw, c)
    for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
        if s:
            gh, gw = ceil_div(gh, 2), ceil_div(gw, 2)  # odd grids are padded to even
            t.norm(f"layers.{s}.downsample.norm", b * gh * gw, 4 * c, role="pool")
            t.linear(f"layers.{s}.downsample.reduction", b * gh * gw, 4 * c, 2 * c, role="pool", bias=False)
            c *= 2
        (wh, sh), (ww, sw) = window_and_shift(gh, spec.window), window_and_shift(gw, spec.window)
        for i in range(depth):
            p = f"layers.{s}.blocks.{i}"
            t.param(f"{p}.attn.relative_position_bias_table", (2 * wh - 1) * (2 * ww - 1) * heads)
            masked = i % 2 == 1 and bool(sh or sw)
            windowed_block(t, p, b, gh, gw, c, heads, int(c * spec.mlp_ratio), wh, ww, terms=2 if masked else 1)
    t.norm("norm", b * gh * gw, c)
    t.eltwise("", b * c, kind="pool", inp=b * gh * gw * c)  # global average pool
    t.linear("head", b, c, spec.num_classes, role="head")
    return t


def grid(spec: SwinSpec, h: Any, w: Any) -> tuple[Any, Any]:
    return h // spec.patch, w // spec.patch


def lattice(spec: SwinSpec) -> tuple[int, int]:
    """Every stage's grid a multiple of the window: no padding anywhere."""
    return spec.patch * 2 ** (len(spec.depths) - 1) * spec.window, spec.patch


def complexity(spec: SwinSpec) -> str:
    return "O(HWC)"  # fixed M x M windows: 2 * M^2 * HW * C


# ---------------------------------------------------------------------------------------------
# Memory


def window_block_memory(peak: PeakSteps, blk: Block, spec: Any, b: int, e: int, fused: bool, outer: int,
                        *, padded_lives_on: bool = True) -> None:
    """A block of nets.swin.SwinBlock's structure (also ViT's windowed blocks): pad(norm1(x)) -> [roll] ->
    partition -> window attention -> reverse -> [roll] -> x + y. In SwinBlock the padded/rolled y stays
    alive to the end of the block (`padded_lives_on`); ViT's windowed attention returns x + y from a
    helper, so y is freed before the MLP. Swin's attention adds a gathered [1, h, N, N] relative-position
    bias (the call's first additive term) and, in shifted blocks, the [nW, N, N] shift mask (the second)."""
    x = blk.out("norm1")
    a = blk.attention()
    heads, tokens, windows = a.heads, a.nq, a.batch
    qkv = blk.out("attn.qkv")
    xp = qkv // 3  # the padded grid: qkv runs on every padded token
    shifted = a.terms == 2
    per_image = windows // b
    partition_copy = 0 if per_image == 1 else xp  # window_partition is a view when a window spans the grid
    bias = heads * tokens * tokens * e if a.terms else 0
    y = xp * e
    if shifted:
        peak.at(outer + (x + 2 * xp) * e, f"{blk.p} roll")
    base = outer + x * e + y + partition_copy * e + qkv * e
    split = windows > 1 and heads > 1
    if fused and shifted:
        # windows folded into the heads, [B, nW*h, N, d]: a copy of each of q, k, v when nW > 1 and h > 1
        # (qkv is freed once all three are copies); bias + mask summed to [nW, h, N, N] and, for h > 1,
        # copied again by the reshape to [1, nW*h, N, N]
        fold = per_image > 1 and heads > 1
        mask = per_image * heads * tokens * tokens * e
        if fold:
            peak.at(base + bias + 3 * a.q * e, f"{blk.p}.attn fold windows into heads")
            base += 3 * a.q * e - qkv * e
        peak.at(base + bias + (2 if heads > 1 else 1) * mask, f"{blk.p}.attn bias + mask")
        terms = bias + mask  # both stay referenced until the attention returns
    else:
        terms = bias
    o = attend(peak, f"{blk.p}.attn", base, a, e, fused=fused, split=split and not (fused and shifted), terms=terms)
    # merging heads copies the [B', h, N, d] output, except a fused kernel's own, laid out [B', N, h, d]
    merge = o if heads > 1 and not (fused and not shifted) else 0
    peak.at(base + terms + o + merge + blk.out("attn.proj") * e, f"{blk.p} attn.proj")
    mlp(peak, blk.p, outer + (2 * x + (xp if padded_lives_on else 0)) * e, x, blk.out("mlp.fc1"),
        blk.out("mlp.fc2"), e)


block_memory = window_block_memory


trace = swin_trace  # the registry reads every family module's `trace`
