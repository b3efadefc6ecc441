"""Swin Transformer V2 (Liu et al. 2022) as torch modules, channels-last ([B, H, W, C]) throughout, with
timm's module names (`timm/models/swin_transformer_v2.py`).

Tree: patch_embed.{proj, norm} -> layers.s (downsample.{reduction, norm} at the start of stages 1..,
then blocks) -> norm -> head (average pool, then head.fc). A block is res-post-norm:
    y = roll back(crop(reverse(cosine W-MSA(partition(pad(roll(x)))))));  x = x + norm1(y)
    x = x + norm2(MLP(x))
The grid is rolled before it is padded, as in timm: a grid that does not divide the window is zero-padded
at the bottom/right after the cyclic shift, and the shift mask is built for the padded grid. Odd grids are
padded to even by patch merging, so stage s has ceil(g / 2^s) rows, and on an axis whose grid is no larger
than the window the window becomes the grid and the shift 0 (`swin.window_and_shift`), in every stage.

Two departures from timm that change no count: the q/v biases are added to the bias-free qkv output in
place (timm's `qkv_bias_separate` form; its default passes them to F.linear inside the attention module,
where fvcore and FlopCounterMode attribute the qkv MACs to `attn` instead of `attn.qkv`), and the learned
logit scale multiplies normalize(q) rather than the scores (the same product, on N*d instead of N*N
elements per head and window, and what lets the sdpa path use a fused kernel).

Otherwise the forward keeps timm's tensors alive: `layers` and each stage's `blocks` are nn.Sequential
(their callers hold the embedding, the stage input and the merged grid); the window pass is
`nets.swin.shifted_window_attention`; the math path forms the scores from temporaries normalize(q) *
scale and normalize(k), builds the bias as timm does (gather, contiguous [h, N, N], 16 * sigmoid) and
keeps it, qkv and the softmax output referenced until the module returns. timm has no fused path for
Swin V2; the sdpa path here passes the bias, plus in shifted blocks the mask expanded to every window
of the batch, as attn_mask (timm's Swin V1 fused path).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcost.analytic.ints import ceil_div
from vitcost.analytic.swin import window_and_shift
from vitcost.nets.common import AttentionCore, ConvEmbed, Mlp, check_input, hierarchical_stages
from vitcost.nets.swin import relative_position_index, shift_attention_mask, shifted_window_attention
from vitcost.specs import SwinV2Spec

MAX_LOGIT_SCALE = math.log(100.0)  # the learned temperature tau stays above 0.01 (Sec. 3.2)
INIT_LOGIT_SCALE = math.log(10.0)  # timm's initial log(1/tau)
CPB_RANGE = 8.0  # relative coordinates are normalised to [-8, 8] before the log spacing (Sec. 3.3)
BIAS_RANGE = 16.0  # the CPB output is squashed to (0, 16) by 16 * sigmoid


def log_spaced_coords(wh: int, ww: int) -> Tensor:
    """[1, 2wh-1, 2ww-1, 2] relative coordinates (dy, dx) of a wh x ww window, scaled to [-8, 8] and
    log-spaced: sign(x) * log2(1 + |x|) / log2(8) (Swin V2 Eq. 4). A one-token axis has the single
    coordinate 0 (timm divides it by wh - 1 = 0 there)."""
    dy = torch.arange(-(wh - 1), wh, dtype=torch.float32) / max(wh - 1, 1)
    dx = torch.arange(-(ww - 1), ww, dtype=torch.float32) / max(ww - 1, 1)
    table = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1)[None] * CPB_RANGE
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(CPB_RANGE)


class WindowAttention(AttentionCore):
    """Multi-head scaled cosine attention inside wh x ww windows with a continuous position bias.
    x: [B*nW, N, C] with N = wh*ww; normalize(q) normalize(k)^T and scores @ v run here on
    [B*nW, heads, N, C/heads] (2 * B*nW * N^2 * C MACs); cpb_mlp maps the [T, 2] coordinate table to
    [T, heads] (T*2*hidden + T*hidden*heads MACs, once per call), gathered to the [1, heads, N, N] bias."""

    def __init__(self, dim: int, heads: int, wh: int, ww: int, cpb_hidden: int, attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.heads = heads
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), INIT_LOGIT_SCALE))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, cpb_hidden), nn.ReLU(inplace=True),
                                     nn.Linear(cpb_hidden, heads, bias=False))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("relative_coords_table", log_spaced_coords(wh, ww), persistent=False)
        self.register_buffer("relative_position_index", relative_position_index(wh, ww), persistent=False)

    def position_bias(self) -> Tensor:
        """[h, N, N]: 16 * sigmoid of the CPB MLP's [T, heads] table gathered by relative position, made
        contiguous head-major before the sigmoid (timm's order)."""
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.heads)  # [T, heads]
        n = self.relative_position_index.shape[0]
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1)
        bias = bias.permute(2, 0, 1).contiguous()
        return BIAS_RANGE * torch.sigmoid(bias)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[B', N, C] -> q, k, v: [B', heads, N, C/heads] views of qkv(x) + cat(q_bias, 0, v_bias); the
        biases are added in place."""
        bw, n, c = x.shape
        qkv = self.qkv(x)
        qkv += torch.cat((self.q_bias, self.k_bias, self.v_bias))
        return qkv.reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Scaled cosine attention (Swin V2 Sec. 3.2): softmax(normalize(q) normalize(k)^T * tau^-1 + bias
        (+ mask)) v, on [B', heads, N, d] with B' = B*nW, no d**-0.5."""
        bw, n, c = x.shape
        q, k, v = self.split_heads(x)
        scale = torch.clamp(self.logit_scale, max=MAX_LOGIT_SCALE).exp()  # [heads, 1, 1]
        if self.attn_mode == "sdpa":  # the scale folded into q: SDPA(scale=1) computes the same function
            q = F.normalize(q, dim=-1) * scale
            k = F.normalize(k, dim=-1)
            attn_mask = self.position_bias().unsqueeze(0)
            if mask is not None:  # [nW, N, N] -> [B*nW, heads, N, N] (a copy for more than one image)
                nw = mask.shape[0]
                mask = mask.view(1, nw, 1, n, n).expand(bw // nw, -1, self.heads, -1, -1)
                attn_mask = attn_mask + mask.reshape(-1, self.heads, n, n)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1.0)
            x = x.transpose(1, 2).reshape(bw, n, c)
            return self.proj(x)
        attn = (F.normalize(q, dim=-1) * scale) @ F.normalize(k, dim=-1).transpose(-2, -1)  # [B', heads, N, N]
        bias = self.position_bias()
        attn = attn + bias.unsqueeze(0)
        if mask is not None:  # scores viewed as [B, nW, heads, N, N]: the mask broadcasts over B
            nw = mask.shape[0]
            attn = attn.view(-1, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class SwinV2Block(nn.Module):
    """Res-post-norm W-MSA (SW-MSA when `shifted`) + MLP on a fixed h x w grid: [B, h, w, C] -> same."""

    def __init__(self, dim: int, heads: int, grid: tuple[int, int], window: int, shifted: bool, hidden: int,
                 cpb_hidden: int, attn_mode: str) -> None:
        super().__init__()
        (self.wh, sh), (self.ww, sw) = window_and_shift(grid[0], window), window_and_shift(grid[1], window)
        self.shift = (sh, sw) if shifted else (0, 0)
        self.padded = (ceil_div(grid[0], self.wh) * self.wh, ceil_div(grid[1], self.ww) * self.ww)
        self.attn = WindowAttention(dim, heads, self.wh, self.ww, cpb_hidden, attn_mode)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)
        self.norm2 = nn.LayerNorm(dim)
        mask = shift_attention_mask(*self.padded, self.wh, self.ww, *self.shift) if any(self.shift) else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = x + self.norm1(shifted_window_attention(self, x))
        x = x.reshape(b, -1, c)
        x = x + self.norm2(self.mlp(x))
        return x.reshape(b, h, w, c)


class PatchMerging(nn.Module):
    """[B, h, w, C] -> [B, ceil(h/2), ceil(w/2), 2C]: odd grids are zero-padded to even, each 2x2
    neighbourhood is concatenated (4C), projected by a bias-free Linear(4C, 2C) and then normalised."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h, w = h + h % 2, w + w % 2
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)  # timm's 2x2 order
        x = self.reduction(x)
        return self.norm(x)


class SwinV2Stage(nn.Module):
    """Optional patch merging, then `depth` blocks alternating regular and shifted windows."""

    def __init__(self, dim: int, depth: int, heads: int, grid: tuple[int, int], window: int, hidden: int,
                 cpb_hidden: int, downsample: bool, attn_mode: str) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim // 2) if downsample else None
        self.blocks = nn.Sequential(*(SwinV2Block(dim, heads, grid, window, i % 2 == 1, hidden, cpb_hidden,
                                                  attn_mode) for i in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        x = self.blocks(x)
        return x


class Head(nn.Module):
    """Global average pool over the grid, then the linear classifier: [B, h, w, C] -> [B, num_classes]."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.mean(dim=(1, 2)))


class SwinTransformerV2(nn.Module):
    """[B, C, H, W] -> [B, num_classes]. Stage s works on a (H/4)/2^s grid (rounded up) of width C*2^s."""

    def __init__(self, spec: SwinV2Spec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        self.patch_embed = ConvEmbed(spec.in_chans, spec.embed_dim, spec.patch, spec.patch, norm=True)
        layers = [SwinV2Stage(dim, depth, heads, grid, spec.window, int(dim * spec.mlp_ratio), spec.cpb_hidden,
                              downsample=s > 0, attn_mode=attn_mode)
                  for s, depth, heads, grid, dim in hierarchical_stages(spec, res)]
        self.layers = nn.Sequential(*layers)
        last = spec.stage_dim(len(spec.depths) - 1)
        self.norm = nn.LayerNorm(last)
        self.head = Head(last, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x)
        x = self.layers(x)
        x = self.norm(x)
        return self.head(x)
