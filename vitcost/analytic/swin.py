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
from vitcost.analytic.peaks import Block, PeakSteps, kept_scores_attention, mlp
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
            masked = i % 2 == 1 and bool(sh or sw)
            with t.block(p, f"layers.{s}", b * gh * gw * c):
                t.param(f"{p}.attn.relative_position_bias_table", (2 * wh - 1) * (2 * ww - 1) * heads)
                # the bias gathered from its float32 table (and the shift mask, a float32 buffer)
                windowed_block(t, p, b, gh, gw, c, heads, int(c * spec.mlp_ratio), wh, ww, terms=2 if masked else 1,
                               tags=("f32_terms",))
    t.norm("norm", b * gh * gw, c)
    t.eltwise("", b * c, kind="pool", inp=b * gh * gw * c)  # global average pool
    t.linear("head", b, c, spec.num_classes, role="head")
    return t


def downsample_memory(peak: PeakSteps, blocks: list[Block], e: int, embed: int) -> None:
    """Patch merging (Swin's and Swin V2's, as timm's PatchMerging) before the first block of stages 1..,
    `embed` bytes held by the callers (an nn.Sequential of stages holds the embedding): the stage input x
    (the previous block's output), then x = pad(x) (a copy, even when nothing is padded), x = the 2x2
    neighbourhoods concatenated (a copy of the padded grid), then the norm and the linear reduction in the
    family's order (Swin: norm first; Swin V2: reduction first), each rebinding x."""
    for prev, blk in zip(blocks, blocks[1:]):
        if blk.index or len(blk.before) != 2:
            continue
        one, two = blk.before
        x, cat = prev.ops[-1].out, (one if one.kind == "linear" else two).inp  # the 2x2 concat feeds the reduction
        peak.at(embed + (x + 2 * cat) * e, f"{one.path.rsplit('.', 1)[0]} pad + concat")
        peak.at(embed + (x + cat + one.out) * e, one.path)
        peak.at(embed + (x + one.out + two.out) * e, two.path)


def grid(spec: SwinSpec, h: Any, w: Any) -> tuple[Any, Any]:
    return h // spec.patch, w // spec.patch


def lattice(spec: SwinSpec) -> tuple[int, int]:
    """Every stage's grid a multiple of the window: no padding anywhere."""
    return spec.patch * 2 ** (len(spec.depths) - 1) * spec.window, spec.patch


def complexity(spec: SwinSpec) -> str:
    return "O(HWC)"  # fixed M x M windows: 2 * M^2 * HW * C


# ---------------------------------------------------------------------------------------------
# Memory


def shifted_window_pass(peak: PeakSteps, blk: Block, x: int, xin: int, b: int, e: int, attention: Any) -> None:
    """The window pass of timm's Swin blocks (V1 and V2): roll (shifted blocks) -> pad -> partition ->
    window attention -> reverse -> crop (padded grids) -> roll back, `xin` bytes alive besides.
    `attention(base)` records the attention's own steps on top of `base` and returns its output bytes."""
    a = blk.attention()
    xp = blk.out("attn.qkv") // 3  # the padded grid: qkv runs on every padded token
    shifted = a.terms == 2
    copy = xp if a.batch > b else 0  # window_partition / window_reverse copy unless one window spans the grid
    if shifted:
        peak.at(xin + x * e, f"{blk.p} roll")
    peak.at(xin + ((x if shifted else 0) + xp) * e, f"{blk.p} pad")
    out = attention(xin + (xp + copy) * e)
    peak.at(xin + (xp + 2 * copy + out) * e, f"{blk.p} window_reverse")
    alive = xin + (xp + copy + out) * e  # the padded grid dies unless the partition is its view
    if xp != x:
        peak.at(alive + x * e, f"{blk.p} crop")
        alive += (x - copy) * e  # the reversed copy dies once cropped
    if shifted:
        peak.at(alive + x * e, f"{blk.p} roll back")


def window_block_memory(peak: PeakSteps, blk: Block, spec: Any, b: int, e: int, fused: bool, outer: int) -> None:
    """nets.swin.SwinBlock, as timm's SwinTransformerBlock: x = x + _attn(norm1(x)) with _attn = roll ->
    pad -> partition -> window attention -> reverse -> crop -> roll back, each step rebinding its name,
    then x = x + mlp(norm2(x)); `outer`: what the nn.Sequential callers hold.

    Alive through the attention: the block input, norm1's output (the argument of _attn), the padded
    grid and its window partition (a copy unless one window spans the grid: the rolled grid dies once
    padded). The attention (`timm_window_attention`) returns the windows' output; reversing them copies
    and frees the padded grid, cropping copies when padded, rolling back copies when shifted.

    The partition and the reverse are views when the grid holds one window per image; for a grid one
    window wide and several high they are views in timm too, which this model (seeing only the number
    of windows) counts as copies."""
    x = blk.out("norm1")
    xin = outer + 2 * x * e  # the block input, norm1's output (_attn's argument)
    shifted_window_pass(peak, blk, x, xin, b, e, lambda base: timm_window_attention(peak, blk, base, b, e, fused))
    peak.at(outer + 3 * x * e, f"{blk.p} residual")  # block input, _attn's result, their sum
    mlp(peak, blk.p, outer + 2 * x * e, x, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)


def timm_window_attention(peak: PeakSteps, blk: Block, base: int, b: int, e: int, fused: bool) -> int:
    """nets.swin.WindowAttention (timm's), `base` bytes alive: qkv stays referenced until the module
    returns. Math: the scaled q and the scores (`peaks.kept_scores_attention`) with the bias gathered
    ([N*N, h], then a contiguous [h, N, N] copy) and added, and in shifted blocks the [nW, N, N] mask
    added on the [B, nW, h, N, N] view. Fused: the bias, plus in shifted blocks the mask expanded to
    every window of the batch ([B*nW, h, N, N], as large as the scores; a copy when B > 1), then summed:
    that sum is the attn_mask alive through the kernel. Returns the output's elements (the proj output)."""
    a = blk.attention()
    qkv = blk.out("attn.qkv")
    q, s = a.q * e, a.scores * e
    bias = a.heads * a.nq * a.nkv * e
    shifted = a.terms == 2
    base += qkv * e
    p = f"{blk.p}.attn"
    if fused:
        peak.at(base + 2 * bias, f"{p} relative position bias")
        terms = bias
        if shifted:  # the expanded mask is a view for one image (no window dims to merge), a copy for more
            peak.at(base + bias + (2 * s if b > 1 else s), f"{p} bias + mask")
            terms = s
        return kept_scores_attention(peak, p, base + terms, a, e, fused=True, proj=blk.out("attn.proj"))
    peak.at(base + q + s + 2 * bias, f"{p} relative position bias")
    peak.at(base + q + 2 * s + bias, f"{p} + bias")
    return kept_scores_attention(peak, p, base, a, e, fused=False, proj=blk.out("attn.proj"))


block_memory = window_block_memory


trace = swin_trace  # the registry reads every family module's `trace`
