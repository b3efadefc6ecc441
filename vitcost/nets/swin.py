"""Swin Transformer (Liu et al. 2021) as torch modules, channels-last ([B, H, W, C]) throughout.

Tree: patch_embed.{proj, norm} -> layers.s (downsample at the start of stages 1.., then blocks)
-> norm -> global average pool -> head. A block is
    x = x + reverse(W-MSA(partition(shift(pad(norm1(x))))));  x = x + MLP(norm2(x))
When the grid does not divide the window the normalised grid is zero-padded to multiples of the
window, shifted, attended on the padded grid and cropped back (the official detection code's order,
so the shift mask is built for the padded grid). On an axis whose grid is no larger than the window
the window becomes the grid and the shift 0 (`window_and_shift`, shared with the analytic walker).
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
    (2 * B*nW * N^2 * C MACs); the bias [1, heads, N, N] (and the shift mask [nW, N, N]) add to the scores."""

    def __init__(self, dim: int, heads: int, wh: int, ww: int, attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = trunc_normal((2 * wh - 1) * (2 * ww - 1), heads)
        self.register_buffer("relative_position_index", relative_position_index(wh, ww), persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)[None]  # [1, h, N, N]
        if mask is None:
            x = self.attend(q, k, v, (bias,))
        elif self.attn_mode == "math":  # scores viewed as [B, nW, heads, N, N]: the mask broadcasts over B
            nw = mask.shape[0]
            q, k, v = (t.reshape(bw // nw, nw, self.heads, n, -1) for t in (q, k, v))
            x = self.attend(q, k, v, (bias, mask[:, None])).reshape(bw, self.heads, n, -1)
        else:  # fused kernels take 4-D inputs: fold the windows into the heads, [B, nW*heads, N, d], so
            # the summed [nW*heads, N, N] bias + mask broadcasts over the batch without a copy per image
            nw = mask.shape[0]
            q, k, v = (t.reshape(bw // nw, nw * self.heads, n, -1) for t in (q, k, v))
            terms = ((bias + mask[:, None]).reshape(1, nw * self.heads, n, n),)
            x = self.attend(q, k, v, terms).reshape(bw, self.heads, n, -1)
        return self.proj(x.transpose(1, 2).reshape(bw, n, c))


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
        _, h, w, _ = x.shape
        (hp, wp), (sh, sw) = self.padded, self.shift
        y = F.pad(self.norm1(x), (0, 0, 0, wp - w, 0, hp - h))  # zero rows/columns at the bottom/right
        if sh or sw:
            y = torch.roll(y, shifts=(-sh, -sw), dims=(1, 2))
        y = self.attn(window_partition(y, self.wh, self.ww), self.attn_mask)
        y = window_reverse(y, self.wh, self.ww, hp, wp)
        if sh or sw:
            y = torch.roll(y, shifts=(sh, sw), dims=(1, 2))
        x = x + y[:, :h, :w, :]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """[B, h, w, C] -> [B, ceil(h/2), ceil(w/2), 2C]: odd grids are zero-padded to even, each 2x2
    neighbourhood is concatenated (4C), normalised and projected by a bias-free Linear(4C, 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        _, h, w, _ = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Optional patch merging, then `depth` blocks alternating regular and shifted windows."""

    def __init__(self, dim: int, depth: int, heads: int, grid: tuple[int, int], window: int, hidden: int,
                 downsample: bool, attn_mode: str) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim // 2) if downsample else None
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, grid, window, i % 2 == 1, hidden, attn_mode)
                                    for i in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return x


class SwinTransformer(nn.Module):
    """[B, C, H, W] -> [B, num_classes]. Stage s works on a (H/4)/2^s grid (rounded up) of width C*2^s."""

    def __init__(self, spec: SwinSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        self.patch_embed = ConvEmbed(spec.in_chans, spec.embed_dim, spec.patch, spec.patch, norm=True)
        gh, gw = res[0] // spec.patch, res[1] // spec.patch
        self.layers = nn.ModuleList()
        for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
            if s:
                gh, gw = ceil_div(gh, 2), ceil_div(gw, 2)
            dim = spec.stage_dim(s)
            self.layers.append(SwinStage(dim, depth, heads, (gh, gw), spec.window, int(dim * spec.mlp_ratio),
                                         downsample=s > 0, attn_mode=attn_mode))
        self.norm = nn.LayerNorm(spec.stage_dim(len(spec.depths) - 1))
        self.head = nn.Linear(spec.stage_dim(len(spec.depths) - 1), spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(dim=(1, 2)))
