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

The SAM image encoder (Kirillov et al. 2023; module names as timm's `samvit_*`) is a windowed ViT whose
attention adds decomposed relative positions (`rel_pos_h`, `rel_pos_w` in every `attn`, sized for the
window or for the grid) and whose final norm and head give way to `neck`: 1x1 conv, LayerNorm2d, 3x3
conv, LayerNorm2d on the [B, D, gh, gw] grid. LayerNorm2d here is timm's (F.layer_norm over the channels
of a permuted view), so fvcore and FlopCounterMode see one layer_norm op, as for nn.LayerNorm.

DeiT with distillation (Touvron et al. 2021; names as timm's `deit_*_distilled_*`) prepends `cls_token`
and `dist_token`, and averages `head` on token 0 and `head_dist` on token 1 (the inference output).

Linear attention (ViTSpec.attention = "linear", Katharopoulos et al. 2020) replaces the attention core of
every block by `linear_attend`.
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
from vitcost.nets.mvit import rel_pos_index
from vitcost.specs import PixelSpec, ViTSpec

LN_EPS = 1e-6  # ViT / DeiT
LINEAR_EPS = 1e-6  # keeps linear attention's normaliser away from 0 (as the paper's fast-transformers code)


def phi(x: Tensor) -> Tensor:
    """The feature map of linear attention, elu(x) + 1 > 0 (the + 1 in place on elu's fresh output)."""
    return F.elu(x).add_(1.0)


def _key_summary(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """phi(k)^T v: [B, h, d, N] @ [B, h, N, d] -> [B, h, d, d] and sum_n phi(k_n): [B, h, d]; phi(k) is
    freed on return."""
    kf = phi(k)
    return kf.transpose(-2, -1) @ v, kf.sum(dim=-2)


def linear_attend(q: Tensor, k: Tensor, v: Tensor, eps: float = LINEAR_EPS) -> Tensor:
    """Linear attention (Katharopoulos et al. 2020, Eq. 5-6) of q, k, v: [B, h, N, d] -> [B, h, N, d]:
        out_i = phi(q_i) (phi(K)^T V) / (phi(q_i) . sum_n phi(k_n) + eps),  phi = elu + 1,
    2*B*h*N*d^2 + B*h*N*d MACs, and no N x N matrix. Both attention paths (math and sdpa) run this same
    code: there is no fused kernel for it."""
    kv, k_sum = _key_summary(k, v)
    qf = phi(q)
    return (qf @ kv) / (qf @ k_sum.unsqueeze(-1) + eps)  # [B, h, N, d] / [B, h, N, 1]


def decomposed_rel_pos(q: Tensor, table_h: Tensor, table_w: Tensor, index_h: Tensor, index_w: Tensor,
                       grid: tuple[int, int]) -> Tensor:
    """Decomposed relative positions (MViTv2 Sec. 4.1; SAM) of q [B, h, N, d] on its gh x gw grid of
    N = gh*gw tokens, as an additive term [B, h, N, N] on the scores:
      rel_h = q [B*h, gh, gw, d] @ R_h^T [gh, d, gh] -> [B*h, gh, gw, gh]   B*h*N*gh*d MACs
      rel_w = q^T [B*h, gw, gh, d] @ R_w^T [gw, d, gw] -> [B*h, gw, gh, gw] B*h*N*gw*d MACs
      term[(i_h, i_w), (j_h, j_w)] = rel_h[i_h, i_w, j_h] + rel_w[i_h, i_w, j_w]
    where R_h = table_h[index_h] gathers the table row of each distance i_h - j_h (and R_w along w)."""
    b, heads, _, d = q.shape
    gh, gw = grid
    r_h, r_w = table_h[index_h], table_w[index_w]  # [gh, gh, d], [gw, gw, d]
    q = q.reshape(b * heads, gh, gw, d)
    rel_h = q @ r_h.transpose(1, 2)  # [B*h, gh, gw, gh]
    rel_w = (q.transpose(1, 2) @ r_w.transpose(1, 2)).transpose(1, 2)  # [B*h, gh, gw, gw]
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, gh * gw, gh * gw)


class Attention(AttentionCore):
    """Global multi-head self-attention over N tokens of width D, h heads of width d = D/h:
    qkv [B, N, D] -> [B, N, 3D]; q k^T and scores @ v on [B, h, N, d] (2*B*h*N^2*d MACs, here);
    proj [B, N, D] -> [B, N, D]. With `rel_grid` (gh, gw), the N = gh*gw tokens get decomposed relative
    positions from two tables of 2*gh-1 and 2*gw-1 rows (the additive term goes to the math path's
    scores, or to sdpa as its attn_mask). With `linear`, linear attention replaces the core
    (`linear_attend`, the same code on both paths)."""

    def __init__(self, dim: int, heads: int, attn_mode: str, rel_grid: tuple[int, int] | None = None,
                 linear: bool = False) -> None:
        super().__init__(attn_mode)
        self.heads, self.linear = heads, linear
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_grid = rel_grid
        if rel_grid:
            gh, gw = rel_grid
            self.rel_pos_h = trunc_normal(2 * gh - 1, dim // heads)
            self.rel_pos_w = trunc_normal(2 * gw - 1, dim // heads)
            self.register_buffer("rel_pos_index_h", rel_pos_index(gh, gh), persistent=False)
            self.register_buffer("rel_pos_index_w", rel_pos_index(gw, gw), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, n, dim = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        terms = ()
        if self.rel_grid:
            terms = (decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, self.rel_pos_index_h,
                                        self.rel_pos_index_w, self.rel_grid),)
        x = linear_attend(q, k, v) if self.linear else self.attend(q, k, v, terms)  # [B, h, N, d]
        return self.proj(x.transpose(1, 2).reshape(b, n, dim))


class Block(nn.Module):
    """Pre-norm transformer block (Vaswani et al. 2017; ViT Eq. 2-3) on [B, N, D]; with `window` > 0
    the attention runs inside window x window windows of the `grid` of tokens (no class tokens)."""

    def __init__(self, dim: int, heads: int, hidden: int, attn_mode: str, window: int = 0,
                 grid: tuple[int, int] = (0, 0), rel_pos: bool = False, linear: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads, attn_mode, ((window, window) if window else grid) if rel_pos else None,
                              linear)
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


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of [B, C, H, W] (timm's LayerNorm2d): F.layer_norm on the channels-last
    view, permuted back. B*H*W*C elements, 2*C parameters."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def sam_neck(dim: int, channels: int) -> nn.Sequential:
    """SAM's neck, [B, D, gh, gw] -> [B, C, gh, gw]: 1x1 conv, LayerNorm2d, 3x3 conv (padding 1), LayerNorm2d."""
    return nn.Sequential(nn.Conv2d(dim, channels, 1, bias=False), LayerNorm2d(channels, eps=LN_EPS),
                         nn.Conv2d(channels, channels, 3, padding=1, bias=False), LayerNorm2d(channels, eps=LN_EPS))


class VisionTransformer(nn.Module):
    """[B, C, H, W] -> ViT: [B, num_classes] logits of the first class token (mean of the tokens when
    the spec has none); pixel model: [B, H*W, vocab] palette logits, pixels in raster order. Without a
    head (num_classes = 0) the features: the neck's [B, C_n, gh, gw] map, or the normed tokens [B, N, D]."""

    def __init__(self, spec: ViTSpec | PixelSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        d, p = spec.dim, spec.patch
        self.patch_embed = ConvEmbed(spec.in_chans, d, kernel=p, stride=p)
        n = (res[0] // p) * (res[1] // p) + spec.class_tokens
        self.cls_token = trunc_normal(1, 1 if spec.distilled else spec.class_tokens, d) if spec.class_tokens else None
        self.dist_token = trunc_normal(1, 1, d) if spec.distilled else None
        self.pos_embed = trunc_normal(1, n, d)
        self.grid = grid = (res[0] // p, res[1] // p)
        self.blocks = nn.ModuleList(Block(d, spec.heads, spec.mlp_hidden, attn_mode, spec.block_window(i), grid,
                                          spec.rel_pos, spec.attention == "linear")
                                    for i in range(spec.depth))
        self.per_token_head = isinstance(spec, PixelSpec)
        self.norm = None if spec.neck else nn.LayerNorm(d, eps=LN_EPS)
        self.neck = sam_neck(d, spec.neck) if spec.neck else None
        classes = spec.vocab if self.per_token_head else spec.num_classes
        self.head = nn.Linear(spec.neck or d, classes) if classes else None
        self.head_dist = nn.Linear(d, classes) if spec.distilled else None

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x).flatten(1, 2)  # [B, gh*gw, D]
        if self.cls_token is not None:
            tokens = [self.cls_token] if self.dist_token is None else [self.cls_token, self.dist_token]
            x = torch.cat([*(t.expand(x.shape[0], -1, -1) for t in tokens), x], dim=1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        if self.neck is not None:  # [B, N, D] -> [B, D, gh, gw] -> [B, C_n, gh, gw]
            x = self.neck(x.view(x.shape[0], *self.grid, -1).permute(0, 3, 1, 2))
            return x if self.head is None else self.head(x.mean(dim=(2, 3)))
        x = self.norm(x)
        if self.head is None:
            return x
        if self.per_token_head:
            return self.head(x)
        if self.head_dist is not None:  # DeiT: the class and distillation heads, averaged
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(x[:, 0] if self.cls_token is not None else x.mean(dim=1))
