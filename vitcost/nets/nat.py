"""NAT (Hassani et al. 2023) and DiNAT (Hassani & Shi 2022) as pure torch modules, channels-last
([B, H, W, C]) throughout; module names follow the SHI-Labs classification models.

Tree: patch_embed.{proj.0, proj.1, norm} -> levels.s.{blocks.i, downsample.{reduction, norm}} -> norm
-> mean over tokens -> head. A block (NATLayer) is
    x = x + g1 * proj(NA(norm1(x)));  x = x + g2 * MLP(norm2(x))      (g = layer scale, or 1)

Neighbourhood attention without NATTEN: each token's k x k neighbourhood (shifted inward at the
borders, taken within the token's dilation group) is gathered from K and V with precomputed indices,
and the token's query attends over it as a sequence of its own, through the shared attention core:
    q [B, hp*wp*h, 1, d] @ k_n^T [B, hp*wp*h, d, k^2] -> [B, hp*wp*h, 1, k^2]   B*hp*wp*h*d*k^2 MACs
    + rel-pos bias gathered from the [h, 2k-1, 2k-1] table to [1, hp*wp*h, 1, k^2]
    softmax over k^2;  @ v_n [B, hp*wp*h, k^2, d] -> [B, hp*wp*h, 1, d]        B*hp*wp*h*d*k^2 MACs
so fvcore and FlopCounterMode count the matmuls NATTEN's counter counts, per token heads*k^2*d MACs
each. The sdpa path hands the same gathered tensors to F.scaled_dot_product_attention with the bias
as attn_mask (one query per neighbourhood). An axis shorter than k*d is zero-padded to k*d before
qkv and cropped before proj, as NATTEN's module does. The gathered K/V are k^2 times the size of K/V:
this is a reference for counting and memory, not a fast kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcost.analytic.ints import conv_out
from vitcost.analytic.nat import padded
from vitcost.nets.common import AttentionCore, Mlp, check_input, trunc_normal
from vitcost.specs import NATSpec


def neighbourhood_index(length: int, kernel: int, dilation: int) -> tuple[Tensor, Tensor]:
    """Neighbours along one axis of `length` >= kernel * dilation tokens: ([length, kernel] key positions,
    [length, kernel] rows of the 2k-1 relative-position table).

    Token i is number j = i // d of its dilation group (positions r, r+d, r+2d, ... with r = i % d,
    n_r = ceil((length - r) / d) of them). Its window is group members start .. start+k-1 with
    start = clamp(j - k//2, 0, n_r - k): centred inside, shifted inward at either end. A key at group
    index j' reads the table at j' - j + k - 1 (0 .. 2k-2)."""
    i = torch.arange(length)
    r, j = i % dilation, i // dilation
    members = (length - r + dilation - 1) // dilation
    start = torch.minimum((j - kernel // 2).clamp(min=0), members - kernel)
    at = start[:, None] + torch.arange(kernel)  # group indices of the k neighbours
    return r[:, None] + dilation * at, at - j[:, None] + kernel - 1


class NeighborhoodAttention(AttentionCore):
    """NA with relative position bias on a fixed grid: [B, h, w, C] -> [B, h, w, C]. qkv and the
    attention run on the grid padded to at least k*d a side; proj on the cropped output."""

    def __init__(self, dim: int, heads: int, kernel: int, dilation: int, grid: tuple[int, int],
                 attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.heads, self.kernel = heads, kernel
        self.padded = (padded(grid[0], kernel, dilation), padded(grid[1], kernel, dilation))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rpb = trunc_normal(heads, 2 * kernel - 1, 2 * kernel - 1)
        self.proj = nn.Linear(dim, dim)
        rows, bias_rows = neighbourhood_index(self.padded[0], kernel, dilation)
        cols, bias_cols = neighbourhood_index(self.padded[1], kernel, dilation)
        # index tensors that broadcast to [hp, wp, heads, k, k]: (row, col, head, key row, key col)
        self.register_buffer("key_rows", rows[:, None, None, :, None], persistent=False)
        self.register_buffer("key_cols", cols[None, :, None, None, :], persistent=False)
        self.register_buffer("bias_rows", bias_rows[:, None, None, :, None], persistent=False)
        self.register_buffer("bias_cols", bias_cols[None, :, None, None, :], persistent=False)
        self.register_buffer("head_index", torch.arange(heads)[None, None, :, None, None], persistent=False)

    def neighbourhoods(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v [B, hp, wp, h, d] -> q [B, hp*wp*h, 1, d] and the gathered k, v [B, hp*wp*h, k^2, d]."""
        b, hp, wp, h, d = q.shape
        n, kk = hp * wp * h, self.kernel**2
        at = (self.key_rows, self.key_cols, self.head_index)
        return (q.reshape(b, n, 1, d), k[:, at[0], at[1], at[2]].reshape(b, n, kk, d),
                v[:, at[0], at[1], at[2]].reshape(b, n, kk, d))

    def bias(self) -> Tensor:
        """The relative position bias of every neighbourhood: [1, hp*wp*h, 1, k^2]."""
        return self.rpb[self.head_index, self.bias_rows, self.bias_cols].reshape(1, -1, 1, self.kernel**2)

    def forward(self, x: Tensor) -> Tensor:
        b, gh, gw, c = x.shape
        hp, wp = self.padded
        if (hp, wp) != (gh, gw):
            x = F.pad(x, (0, 0, 0, wp - gw, 0, hp - gh))  # zero rows/columns at the bottom/right
        q, k, v = self.qkv(x).reshape(b, hp, wp, 3, self.heads, c // self.heads).unbind(3)
        y = self.attend(*self.neighbourhoods(q, k, v), (self.bias(),))
        return self.proj(y.reshape(b, hp, wp, c)[:, :gh, :gw])


class NATLayer(nn.Module):
    """Pre-norm NA + MLP block with optional layer scale: [B, h, w, C] -> same."""

    def __init__(self, dim: int, heads: int, kernel: int, dilation: int, grid: tuple[int, int], hidden: int,
                 layer_scale: float, attn_mode: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention(dim, heads, kernel, dilation, grid, attn_mode)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)
        if layer_scale > 0:
            self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale))
            self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale))
        else:
            self.gamma1 = self.gamma2 = None

    @staticmethod
    def _scaled(gamma: Tensor | None, y: Tensor) -> Tensor:
        return y if gamma is None else gamma * y

    def forward(self, x: Tensor) -> Tensor:
        x = x + self._scaled(self.gamma1, self.attn(self.norm1(x)))
        return x + self._scaled(self.gamma2, self.mlp(self.norm2(x)))


class ConvTokenizer(nn.Module):
    """[B, C_in, H, W] -> [B, ceil(ceil(H/2)/2), ..., C]: two 3x3 stride-2 convs (padding 1), the first
    to C/2 channels, then LayerNorm."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_chans, dim // 2, 3, stride=2, padding=1),
                                  nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class ConvDownsampler(nn.Module):
    """[B, h, w, C] -> [B, ceil(h/2), ceil(w/2), 2C]: 3x3 stride-2 conv (padding 1, no bias), LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, 3, stride=2, padding=1, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NATLevel(nn.Module):
    """`depth` NAT blocks, then the downsampler (every level but the last)."""

    def __init__(self, spec: NATSpec, stage: int, grid: tuple[int, int], attn_mode: str) -> None:
        super().__init__()
        dim = spec.stage_dim(stage)
        self.blocks = nn.ModuleList(
            NATLayer(dim, spec.heads[stage], spec.kernel, spec.dilation(stage, i), grid, int(dim * spec.mlp_ratio),
                     spec.layer_scale, attn_mode) for i in range(spec.depths[stage]))
        self.downsample = ConvDownsampler(dim) if stage < len(spec.depths) - 1 else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class NAT(nn.Module):
    """[B, C, H, W] -> [B, num_classes]. Level s works on a grid halved s times after the tokenizer's
    stride 4 (rounded up), of width C * 2^s."""

    def __init__(self, spec: NATSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        self.patch_embed = ConvTokenizer(spec.in_chans, spec.embed_dim)
        gh, gw = (conv_out(conv_out(r, 3, 2, 1), 3, 2, 1) for r in res)
        self.levels = nn.ModuleList()
        for s in range(len(spec.depths)):
            self.levels.append(NATLevel(spec, s, (gh, gw), attn_mode))
            gh, gw = conv_out(gh, 3, 2, 1), conv_out(gw, 3, 2, 1)
        last = spec.stage_dim(len(spec.depths) - 1)
        self.norm = nn.LayerNorm(last)
        self.head = nn.Linear(last, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x)
        for level in self.levels:
            x = level(x)
        return self.head(self.norm(x).mean(dim=(1, 2)))
