"""ViT (Dosovitskiy et al. 2021) and pixel-level attention (Image GPT, Chen et al. 2020) as torch modules.

Both are a token sequence through `depth` pre-norm blocks of global multi-head self-attention:
    x = x + proj(MSA(norm1(x)));  x = x + fc2(GELU(fc1(norm2(x))))
ViT embeds P x P patches with a stride-P conv, prepends class token(s), adds a learned position
embedding of one row per token (so its size follows the resolution) and classifies the first class
token after the final norm (the mean token without one). A windowed block (ViTSpec.window > 0, as in
ViTDet and the SAM image encoder) views the tokens as their gh x gw grid, zero-pads the normalised
grid to multiples of the window, attends inside each window and crops back, in the order of
`nets.swin.SwinBlock` without the shift. The pixel model embeds every pixel with a 1x1 conv and predicts a
`vocab`-way palette logit per pixel (see PixelSpec for how this differs from iGPT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcost.analytic.transformer import padded
from vitcost.nets.common import (
    AttentionCore,
    ConvEmbed,
    Mlp,
    check_input,
    trunc_normal,
    window_partition,
    window_reverse,
)
from vitcost.specs import PixelSpec, ViTSpec

LN_EPS = 1e-6  # ViT / DeiT


class Attention(AttentionCore):
    """Global multi-head self-attention over N tokens of width D, h heads of width d = D/h:
    qkv [B, N, D] -> [B, N, 3D]; q k^T and scores @ v on [B, h, N, d] (2*B*h*N^2*d MACs, here);
    proj [B, N, D] -> [B, N, D]."""

    def __init__(self, dim: int, heads: int, attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, dim = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = self.attend(q, k, v)  # [B, h, N, d]
        return self.proj(x.transpose(1, 2).reshape(b, n, dim))


class Block(nn.Module):
    """Pre-norm transformer block (Vaswani et al. 2017; ViT Eq. 2-3) on [B, N, D]; with `window` > 0
    the attention runs inside window x window windows of the `grid` of tokens (no class tokens)."""

    def __init__(self, dim: int, heads: int, hidden: int, attn_mode: str, window: int = 0,
                 grid: tuple[int, int] = (0, 0)) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads, attn_mode)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden)
        self.window, self.grid = window, grid
        self.padded = (padded(grid[0], window), padded(grid[1], window)) if window else grid

    def forward(self, x: Tensor) -> Tensor:
        if self.window:
            x = self._windowed(x)
        else:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def _windowed(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        (h, w), (hp, wp), m = self.grid, self.padded, self.window
        y = F.pad(self.norm1(x).view(b, h, w, d), (0, 0, 0, wp - w, 0, hp - h))  # zeros at the bottom/right
        y = window_reverse(self.attn(window_partition(y, m, m)), m, m, hp, wp)
        return (x.view(b, h, w, d) + y[:, :h, :w, :]).view(b, n, d)


class VisionTransformer(nn.Module):
    """[B, C, H, W] -> ViT: [B, num_classes] logits of the first class token (mean of the tokens when
    the spec has none); pixel model: [B, H*W, vocab] palette logits, pixels in raster order."""

    def __init__(self, spec: ViTSpec | PixelSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        d, p = spec.dim, spec.patch
        self.patch_embed = ConvEmbed(spec.in_chans, d, kernel=p, stride=p)
        n = (res[0] // p) * (res[1] // p) + spec.class_tokens
        self.cls_token = trunc_normal(1, spec.class_tokens, d) if spec.class_tokens else None
        self.pos_embed = trunc_normal(1, n, d)
        grid = (res[0] // p, res[1] // p)
        self.blocks = nn.ModuleList(Block(d, spec.heads, spec.mlp_hidden, attn_mode, spec.block_window(i), grid)
                                    for i in range(spec.depth))
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.per_token_head = isinstance(spec, PixelSpec)
        self.head = nn.Linear(d, spec.vocab if self.per_token_head else spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x).flatten(1, 2)  # [B, gh*gw, D]
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        if self.per_token_head:
            return self.head(x)
        return self.head(x[:, 0] if self.cls_token is not None else x.mean(dim=1))
