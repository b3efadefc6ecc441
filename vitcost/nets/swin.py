"""Swin Transformer (Liu et al. 2021) as torch modules, channels-last ([B, H, W, C]) throughout.

Tree: patch_embed.{proj, norm} -> layers.s (downsample at the start of stages 1.., then blocks)
-> norm -> global average pool -> head. A block is
    x = x + unshift(crop(reverse(W-MSA(partition(pad(shift(norm1(x))))))));  x = x + MLP(norm2(x))
When the grid does not divide the window the normalised grid is cyclically shifted, then zero-padded
at the bottom/right to multiples of the window, attended on the padded grid, cropped back and shifted
back; the shift mask is built for the padded grid. On an axis whose grid is no larger than the window
the window becomes the grid and the shift 0 (`window_and_shift`, shared with the analytic walker).

The forward follows timm's `swin_transformer.py` (the implementation people run), which changes which
tensors are alive and so the memory: shift before padding (the official detection code pads first:
the same counts, a different grid at the borders); `layers` and each stage's `blocks` are
nn.Sequential, whose callers keep their inputs referenced until the last module returns; the
attention module keeps qkv, the scaled q and the softmax output referenced until it returns; and the
fused path adds the shift mask to the bias expanded to every window of the batch, a [B*nW, h, N, N]
mask, as timm does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcost.analytic.ints import ceil_div
from vitcost.analytic.swin import window_and_shift
from vitcost.nets.common import (
    AttentionCore,
    ConvEmbed,
    Mlp,
    check_input,
    hierarchical_stages,
    trunc_normal,
    window_partition,
    window_reverse,
)
from vitcost.specs import SwinSpec

MASK_VALUE = -100.0  # the official code's additive mask between tokens of different shifted regions


def relative_position_index(wh: int, ww: int) -> Tensor:
    """[wh*ww, wh*ww] index into the (2wh-1)*(2ww-1)-row bias table: for tokens i, j of a window,
    (dy + wh - 1) * (2ww - 1) + (dx + ww - 1) with (dy, dx) = position(i) - position(j)."""
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy, dx = ys[:, None] - ys[None, :] + wh - 1, xs[:, None] - xs[None, :] + ww - 1
    return dy * (2 * ww - 1) + dx


def shift_attention_mask(hp: int, wp: int, wh: int, ww: int, sh: int, sw: int) -> Tensor:
    """[nW, wh*ww, wh*ww] additive mask for the shifted windows of a padded hp x wp grid: after the
    cyclic shift a window can hold tokens from up to 3 x 3 regions that were not neighbours; pairs
    from different regions get MASK_VALUE (Swin Sec. 3.2, "efficient batch computation")."""
    region = torch.zeros(1, hp, wp, 1)
    label = 0
    for ys in _shift_slices(wh, sh):
        for xs in _shift_slices(ww, sw):
            region[:, ys, xs, :] = label
            label += 1
    labels = window_partition(region, wh, ww).squeeze(-1)  # [nW, wh*ww]
    diff = labels[:, :, None] - labels[:, None, :]
    return torch.zeros_like(diff).masked_fill(diff != 0, MASK_VALUE)


def _shift_slices(window: int, shift: int) -> tuple[slice, ...]:
    if shift == 0:
        return (slice(None),)
    return slice(0, -window), slice(-window, -shift), slice(-shift, None)


class WindowAttention(AttentionCore):
    """Multi-head self-attention inside wh x ww windows with a learned relative position bias.
    x: [B*nW, N, C] with N = wh*ww; q k^T and scores @ v run here on [B*nW, heads, N, C/heads]
    (2 * B*nW * N^2 * C MACs); the bias [1, heads, N, N] (and the shift mask [nW, N, N]) add to the scores.

    As timm's WindowAttention: the math path scales q, forms the scores, adds the bias, adds the mask
    on the scores viewed as [B, nW, heads, N, N], takes the softmax and multiplies by v, each step
    rebinding its name, so qkv, the scaled q and the softmax output stay referenced until the module
    returns; the sdpa path passes the bias, plus the mask expanded to [B*nW, heads, N, N], as attn_mask."""

    def __init__(self, dim: int, heads: int, wh: int, ww: int, attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = trunc_normal((2 * wh - 1) * (2 * ww - 1), heads)
        self.register_buffer("relative_position_index", relative_position_index(wh, ww), persistent=False)

    def position_bias(self) -> Tensor:
        """[1, heads, N, N]: the table's rows gathered by relative position ([N*N, heads]), made contiguous
        head-major."""
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)].view(n, n, -1)
        bias = bias.permute(2, 0, 1).contiguous()
        return bias.unsqueeze(0)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.attn_mode == "sdpa":
            attn_mask = self.position_bias()
            if mask is not None:  # [nW, N, N] -> [B, nW, heads, N, N] (a view) -> [B*nW, heads, N, N] (a copy)
                nw = mask.shape[0]
                mask = mask.view(1, nw, 1, n, n).expand(bw // nw, -1, self.heads, -1, -1)
                attn_mask = attn_mask + mask.reshape(-1, self.heads, n, n)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            q = q * self.scale
            attn = q @ k.transpose(-2, -1)  # [B*nW, heads, N, N]
            attn = attn + self.position_bias()
            if mask is not None:  # scores viewed as [B, nW, heads, N, N]: the mask broadcasts over B
                nw = mask.shape[0]
                attn = attn.view(-1, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
                attn = attn.view(-1, self.heads, n, n)
            attn = attn.softmax(dim=-1)
            x = attn @ v
        x = x.transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class SwinBlock(nn.Module):
    """W-MSA (or SW-MSA when `shifted`) + MLP, pre-norm, on a fixed h x w grid: [B, h, w, C] -> same."""

    def __init__(self, dim: int, heads: int, grid: tuple[int, int], window: int, shifted: bool, hidden: int,
                 attn_mode: str) -> None:
        super().__init__()
        (self.wh, sh), (self.ww, sw) = window_and_shift(grid[0], window), window_and_shift(grid[1], window)
        self.shift = (sh, sw) if shifted else (0, 0)
        self.padded = (ceil_div(grid[0], self.wh) * self.wh, ceil_div(grid[1], self.ww) * self.ww)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, self.wh, self.ww, attn_mode)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)
        mask = shift_attention_mask(*self.padded, self.wh, self.ww, sh, sw) if any(self.shift) else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = x + shifted_window_attention(self, self.norm1(x))
        x = x.reshape(b, -1, c)
        x = x + self.mlp(self.norm2(x))
        return x.reshape(b, h, w, c)


def shifted_window_attention(block: nn.Module, x: Tensor) -> Tensor:
    """timm's SwinTransformerBlock._attn on [B, h, w, C] for a block with `attn`, `attn_mask`, `wh`, `ww`,
    `shift` and `padded`: shift -> pad -> partition -> window attention -> reverse -> crop -> shift back,
    each step rebinding its name (the partition stays referenced until the end)."""
    _, h, w, _ = x.shape
    (hp, wp), (sh, sw) = block.padded, block.shift
    shifted = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2)) if sh or sw else x
    shifted = F.pad(shifted, (0, 0, 0, wp - w, 0, hp - h))  # zero rows/columns at the bottom/right
    windows = window_partition(shifted, block.wh, block.ww)
    attended = block.attn(windows, block.attn_mask)
    shifted = window_reverse(attended, block.wh, block.ww, hp, wp)
    shifted = shifted[:, :h, :w, :].contiguous()
    return torch.roll(shifted, shifts=(sh, sw), dims=(1, 2)) if sh or sw else shifted


class PatchMerging(nn.Module):
    """[B, h, w, C] -> [B, ceil(h/2), ceil(w/2), 2C]: odd grids are zero-padded to even, each 2x2
    neighbourhood is concatenated (4C, in the order (0, 0), (1, 0), (0, 1), (1, 1)), normalised and
    projected by a bias-free Linear(4C, 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h, w = h + h % 2, w + w % 2
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        x = self.norm(x)
        return self.reduction(x)


class SwinStage(nn.Module):
    """Optional patch merging, then `depth` blocks alternating regular and shifted windows."""

    def __init__(self, dim: int, depth: int, heads: int, grid: tuple[int, int], window: int, hidden: int,
                 downsample: bool, attn_mode: str) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim // 2) if downsample else None
        self.blocks = nn.Sequential(*(SwinBlock(dim, heads, grid, window, i % 2 == 1, hidden, attn_mode)
                                      for i in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        x = self.blocks(x)
        return x


class SwinTransformer(nn.Module):
    """[B, C, H, W] -> [B, num_classes]. Stage s works on a (H/4)/2^s grid (rounded up) of width C*2^s."""

    def __init__(self, spec: SwinSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        self.patch_embed = ConvEmbed(spec.in_chans, spec.embed_dim, spec.patch, spec.patch, norm=True)
        layers = [SwinStage(dim, depth, heads, grid, spec.window, int(dim * spec.mlp_ratio), downsample=s > 0,
                            attn_mode=attn_mode)
                  for s, depth, heads, grid, dim in hierarchical_stages(spec, res)]
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(spec.stage_dim(len(spec.depths) - 1))
        self.head = nn.Linear(spec.stage_dim(len(spec.depths) - 1), spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x)
        x = self.layers(x)
        x = self.norm(x)
        return self.head(x.mean(dim=(1, 2)))
