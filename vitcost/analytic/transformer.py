"""Walkers for the single-scale families: ViT patch attention and pixel-level attention.

Both are a token grid fed to `depth` pre-norm blocks (Vaswani et al. 2017; Dosovitskiy et al. 2021):
    x = x + proj(MSA(norm1(x)));  x = x + fc2(GELU(fc1(norm2(x))))
Per block and image, with N tokens of width D (Swin paper Eq. 1 plus the MLP):
    qkv 3ND^2 + QK^T N^2 D + AV N^2 D + proj ND^2 + MLP 2*r*ND^2  MACs.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import floor_div
from vitcost.analytic.trace import Trace
from vitcost.specs import PixelSpec, ViTSpec


def transformer_block(t: Trace, p: str, b: Any, n: Any, dim: int, heads: int, hidden: int) -> None:
    """One pre-norm global-attention block over n tokens of width dim, path prefix `p`."""
    rows, x = b * n, b * n * dim
    t.norm(f"{p}.norm1", rows, dim, held=x)
    t.linear(f"{p}.attn.qkv", rows, dim, 3 * dim, role="proj", held=x)
    t.attention(f"{p}.attn", b, heads, n, n, dim // heads, held=x)
    t.linear(f"{p}.attn.proj", rows, dim, dim, role="proj", held=x)
    t.eltwise(p, x)  # residual
    t.norm(f"{p}.norm2", rows, dim, held=x)
    t.linear(f"{p}.mlp.fc1", rows, dim, hidden, role="mlp", held=x + x)
    t.gelu(f"{p}.mlp.act", rows * hidden, held=x + x)
    t.linear(f"{p}.mlp.fc2", rows, hidden, dim, role="mlp", held=x + x)
    t.eltwise(p, x)  # residual


def vit_trace(spec: ViTSpec | PixelSpec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    d = spec.dim
    gh, gw = t.conv("patch_embed.proj", b, spec.in_chans, d, h, w, kernel=spec.patch, stride=spec.patch,
                    pad=0, role="embed")
    n = gh * gw + spec.class_tokens
    if spec.class_tokens:
        t.param("cls_token", spec.class_tokens * d)
    t.param("pos_embed", n * d)
    t.eltwise("", b * n * d)  # + pos_embed, in the model's own forward
    for i in range(spec.depth):
        transformer_block(t, f"blocks.{i}", b, n, d, spec.heads, spec.mlp_hidden)
    t.norm("norm", b * n, d)
    if isinstance(spec, PixelSpec):
        t.linear("head", b * n, d, spec.vocab, role="head")  # a palette logit per pixel
    else:
        t.linear("head", b, d, spec.num_classes, role="head")  # on the class token
    return t


def grid(spec: ViTSpec | PixelSpec, h: Any, w: Any) -> tuple[Any, Any]:
    return floor_div(h, spec.patch), floor_div(w, spec.patch)
