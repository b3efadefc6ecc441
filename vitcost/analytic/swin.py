"""Swin Transformer walker (Liu et al. 2021).

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
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import SwinSpec


def window_and_shift(size: Any, window: int) -> tuple[Any, Any]:
    """Window and shift along one axis: the grid itself, unshifted, when it fits in one window."""
    if isinstance(size, int) and size <= window:
        return size, 0
    return window, window // 2


def swin_block(t: Trace, p: str, b: Any, h: Any, w: Any, dim: int, heads: int, window: int, shifted: bool,
               hidden: int) -> None:
    (wh, sh), (ww, sw) = window_and_shift(h, window), window_and_shift(w, window)
    hp, wp = ceil_div(h, wh) * wh, ceil_div(w, ww) * ww  # padded grid
    n_win = b * (hp // wh if isinstance(hp, int) else hp / wh) * (wp // ww if isinstance(wp, int) else wp / ww)
    nw = wh * ww  # tokens per window
    x = b * h * w * dim
    t.norm(f"{p}.norm1", b * h * w, dim, held=x)
    t.linear(f"{p}.attn.qkv", b * hp * wp, dim, 3 * dim, role="proj", held=x)
    masked = shifted and (sh or sw)
    t.param(f"{p}.attn.relative_position_bias_table", (2 * wh - 1) * (2 * ww - 1) * heads)
    t.attention(f"{p}.attn", n_win, heads, nw, nw, dim // heads, held=x, score_terms=2 if masked else 1)
    t.linear(f"{p}.attn.proj", b * hp * wp, dim, dim, role="proj", held=x)
    t.eltwise(p, x)  # residual
    t.norm(f"{p}.norm2", b * h * w, dim, held=x)
    t.linear(f"{p}.mlp.fc1", b * h * w, dim, hidden, role="mlp", held=x + x)
    t.gelu(f"{p}.mlp.act", b * h * w * hidden, held=x + x)
    t.linear(f"{p}.mlp.fc2", b * h * w, hidden, dim, role="mlp", held=x + x)
    t.eltwise(p, x)  # residual


def swin_trace(spec: SwinSpec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    c = spec.embed_dim
    gh, gw = t.conv("patch_embed.proj", b, spec.in_chans, c, h, w, kernel=spec.patch, stride=spec.patch,
                    pad=0, role="embed")
    if isinstance(gh, int) and (gh < spec.window or gw < spec.window):
        raise SpecError(f"window {spec.window} is larger than the {gh}x{gw} token grid of the first stage "
                        f"at {h}x{w}; use a larger resolution or a smaller --window.")
    t.norm("patch_embed.norm", b * gh * gw, c)
    for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
        if s:
            gh, gw = ceil_div(gh, 2), ceil_div(gw, 2)  # odd grids are padded to even
            t.norm(f"layers.{s}.downsample.norm", b * gh * gw, 4 * c, role="pool")
            t.linear(f"layers.{s}.downsample.reduction", b * gh * gw, 4 * c, 2 * c, role="pool", bias=False)
            c *= 2
        for i in range(depth):
            swin_block(t, f"layers.{s}.blocks.{i}", b, gh, gw, c, heads, spec.window, i % 2 == 1,
                       int(c * spec.mlp_ratio))
    t.norm("norm", b * gh * gw, c)
    t.eltwise("", b * c, kind="pool", inp=b * gh * gw * c)  # global average pool
    t.linear("head", b, c, spec.num_classes, role="head")
    return t
