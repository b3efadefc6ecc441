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
from vitcost.analytic.liveness import Attend, Call, Step, timm_attention
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
            patch_merging(t, f"layers.{s}.downsample", b * gh * gw * 4 * c)
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
                               tags=("f32_terms",), swin=True)
    t.norm("norm", b * gh * gw, c)
    t.eltwise("", b * c, kind="pool", inp=b * gh * gw * c)  # global average pool
    t.linear("head", b, c, spec.num_classes, role="head")
    return t


def patch_merging(t: Trace, p: str, cat: Any) -> None:
    """timm's PatchMerging (Swin and Swin V2) before its norm and reduction: x = pad(x) (a copy, even when
    nothing is padded), then the 2x2 neighbourhoods concatenated (a copy of the padded grid, `cat` elements),
    each rebinding x."""
    t.copy(p, cat, "pad")
    t.copy(p, cat, "concat")


def grid(spec: SwinSpec, h: Any, w: Any) -> tuple[Any, Any]:
    return h // spec.patch, w // spec.patch


def lattice(spec: SwinSpec) -> tuple[int, int]:
    """Every stage's grid a multiple of the window: no padding anywhere."""
    return spec.patch * 2 ** (len(spec.depths) - 1) * spec.window, spec.patch


def complexity(spec: SwinSpec) -> str:
    return "O(HWC)"  # fixed M x M windows: 2 * M^2 * HW * C


# ---------------------------------------------------------------------------------------------
# Memory: timm's WindowAttention (`liveness`)


def swin_attention(c: Call) -> Attend:
    """timm's WindowAttention (Swin): `timm_attention` with the relative-position bias gathered ([N*N, h],
    then a contiguous [h, N, N] copy) and added, and in shifted blocks (two terms) the [nW, N, N] mask added
    on the [B, nW, h, N, N] view. Fused: the bias, plus in shifted blocks the mask expanded to every window
    of the batch ([B*nW, h, N, N], as large as the scores; a copy for more than one image), then summed:
    that sum is the attn_mask, kept until the module returns. `batch`: the images."""
    a, e, fused, batch = c.op.call, c.e, c.fused, c.batch
    q, s = a.q * e, a.scores * e
    bias = a.heads * a.nq * a.nkv * e
    at = timm_attention(c)
    if not fused:
        return Attend([Step("relative position bias", q + s + 2 * bias), Step("+ bias", q + 2 * s + bias), *at.steps],
                      at.kept, at.out)
    steps, terms = [Step("relative position bias", 2 * bias)], bias
    if a.terms == 2:
        steps.append(Step("bias + mask", bias + (2 * s if batch > 1 else s)))
        terms = s
    return Attend([*steps, *(Step(st.name, st.nbytes + terms, st.scratch) for st in at.steps)], terms, at.out)


ATTENTION = {"swin": swin_attention}  # the engine's programs (`liveness`)


trace = swin_trace  # the registry reads every family module's `trace`
