"""BiFormer (Zhu et al. 2023) as pure torch modules; module names follow the official code
(rayleizhu/BiFormer: models/biformer.py, ops/bra_legacy.py), so its checkpoints' keys are these paths.

Tree: downsample_layers.0 (the stem: conv, BatchNorm, GELU, conv, BatchNorm) -> stages.0 ->
downsample_layers.s (conv, BatchNorm) -> stages.s ... -> norm (BatchNorm) -> mean over the grid -> head.
A block takes and returns [B, C, H, W] and runs channels last inside:
    x = x + pos_embed(x);  x = x + attn(norm1(x));  x = x + mlp(norm2(x))

Bi-level routing attention (BiLevelRoutingAttention), S = n_win, on [B, H, W, C]:
    pad to hp x wp (multiples of S), regions [B, S^2, hp/S, wp/S, C] (a copy)
    q, kv = qkv.qkv(x) split [C | 2C]                          views of one [.., 3C] tensor
    Q_r, K_r = means of q and k over each region               [B, S^2, C]
    lepe = lepe(v as [B, C, hp, wp])                           side x side depthwise conv
    A = (Q_r * scale) @ K_r^T; index = top k of each row       router: [B, S^2, S^2] -> [B, S^2, k]
    gathered = kv of the k regions                             kv_gather: [B, S^2, k, w2, 2C]
    o = attend(q [B*S^2, m, w2, d], k, v [B*S^2, m, k*w2, d])  the shared attention core (math | sdpa)
    o = o laid back out as [B, hp, wp, C] (a copy) + lepe; wo(o); crop the padding (a copy)
The routing reads detached region queries and keys (the code's default hard, non-differentiable routing).
A stage with top-k 0 runs AttentionLePE: qkv (no bias), attention over the grid, + lepe(attention input),
proj. Both attentions scale q by head_dim^-0.5 in the shared core (the code: qk_dim^-0.5, and the global
stage scales the scores); the routing's unused softmax over the top-k affinities is left out. Neither
changes a count (see BiFormerSpec).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcost.analytic.biformer import POS_KERNEL, regions, stage_grids
from vitcost.nets.common import AttentionCore, check_input
from vitcost.specs import BiFormerSpec


def to_regions(x: Tensor, s: int) -> Tensor:
    """[B, hp, wp, C] -> [B, S^2, hp/S, wp/S, C], regions in row-major order (a copy)."""
    b, hp, wp, c = x.shape
    return x.reshape(b, s, hp // s, s, wp // s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, s * s, hp // s, wp // s, c)


def regions_to_nchw(x: Tensor, s: int) -> Tensor:
    """[B, S^2, rh, rw, C] -> [B, C, S*rh, S*rw] (a copy)."""
    b, _, rh, rw, c = x.shape
    return x.reshape(b, s, s, rh, rw, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, s * rh, s * rw)


class QKVLinear(nn.Module):
    """One linear to [q | k v]: [.., C] -> ([.., C], [.., 2C]), views of one output."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        q, kv = self.qkv(x).split([self.dim, 2 * self.dim], dim=-1)
        return q, kv


class TopkRouting(nn.Module):
    """The region affinity and its top k per row: [B, S^2, C] x 2 -> int64 [B, S^2, k]."""

    def __init__(self, dim: int, topk: int) -> None:
        super().__init__()
        self.topk, self.scale = topk, dim**-0.5

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        affinity = (query.detach() * self.scale) @ key.detach().transpose(-2, -1)  # [B, S^2, S^2]
        return torch.topk(affinity, k=self.topk, dim=-1).indices


class KVGather(nn.Module):
    """The keys and values of each region's top-k regions: kv [B, S^2, w2, 2C], index [B, S^2, k] ->
    [B, S^2, k, w2, 2C]."""

    def forward(self, index: Tensor, kv: Tensor) -> Tensor:
        b, r2, w2, c = kv.shape
        k = index.shape[-1]
        return torch.gather(kv.view(b, 1, r2, w2, c).expand(-1, r2, -1, -1, -1), 2,
                            index.view(b, r2, k, 1, 1).expand(-1, -1, -1, w2, c))


class BiLevelRoutingAttention(AttentionCore):
    """BRA on a fixed grid: [B, h, w, C] -> [B, h, w, C]."""

    def __init__(self, dim: int, heads: int, n_win: int, topk: int, side: int, grid: tuple[int, int],
                 padded: tuple[int, int], attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.dim, self.heads, self.n_win = dim, heads, n_win
        self.grid, self.padded = grid, padded
        self.lepe = nn.Conv2d(dim, dim, side, padding=side // 2, groups=dim)
        self.router = TopkRouting(dim, topk)
        self.kv_gather = KVGather()
        self.qkv = QKVLinear(dim)
        self.wo = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        hp, wp = self.padded
        s, m = self.n_win, self.heads
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))  # zero rows/columns at the bottom/right
        rh, rw = hp // s, wp // s
        q, kv = self.qkv(to_regions(x, s))  # [B, S^2, rh, rw, C], [B, S^2, rh, rw, 2C]
        q_r, k_r = q.mean(dim=(2, 3)), kv[..., :c].mean(dim=(2, 3))
        lepe = self.lepe(regions_to_nchw(kv[..., c:], s))
        index = self.router(q_r, k_r)
        k_sel, v_sel = self.kv_gather(index, kv.reshape(b, s * s, rh * rw, 2 * c)).split([c, c], dim=-1)
        top, d = index.shape[-1], c // m
        o = self.attend(q.reshape(b * s * s, rh * rw, m, d).transpose(1, 2),
                        k_sel.reshape(b * s * s, top * rh * rw, m, d).transpose(1, 2),
                        v_sel.reshape(b * s * s, top * rh * rw, m, d).transpose(1, 2))  # [B*S^2, m, w2, d]
        o = o.reshape(b, s, s, m, rh, rw, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
        o = self.wo(o + lepe.permute(0, 2, 3, 1))
        if (hp, wp) != (h, w):
            o = o[:, :h, :w].contiguous()
        return o


class AttentionLePE(AttentionCore):
    """Global attention with LePE: [B, h, w, C] -> [B, h, w, C]; qkv without bias."""

    def __init__(self, dim: int, heads: int, side: int, attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.lepe = nn.Conv2d(dim, dim, side, padding=side // 2, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        n, m = h * w, self.heads
        q, k, v = self.qkv(x.reshape(b, n, c)).reshape(b, n, 3, m, c // m).permute(2, 0, 3, 1, 4).unbind(0)
        lepe = self.lepe(x.permute(0, 3, 1, 2))
        o = self.attend(q, k, v).transpose(1, 2).reshape(b, n, c)
        o = o + lepe.permute(0, 2, 3, 1).reshape(b, n, c)
        return self.proj(o).reshape(b, h, w, c)


class Block(nn.Module):
    """[B, C, H, W] -> same: depthwise conv position embedding, then pre-norm attention and MLP, channels last."""

    def __init__(self, spec: BiFormerSpec, stage: int, grid: tuple[int, int], attn_mode: str) -> None:
        super().__init__()
        dim, topk, side = spec.dims[stage], spec.topks[stage], spec.side_dwconv
        self.pos_embed = nn.Conv2d(dim, dim, POS_KERNEL, padding=POS_KERNEL // 2, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if topk:
            rh, rw = regions(spec, *grid)
            self.attn: nn.Module = BiLevelRoutingAttention(dim, spec.heads(stage), spec.n_win, topk, side, grid,
                                                           (rh * spec.n_win, rw * spec.n_win), attn_mode)
        else:
            self.attn = AttentionLePE(dim, spec.heads(stage), side, attn_mode)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * spec.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Identity(), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_embed(x)
        x = x.permute(0, 2, 3, 1)
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x.permute(0, 3, 1, 2)


class BiFormer(nn.Module):
    """[B, C_in, H, W] -> [B, num_classes]."""

    def __init__(self, spec: BiFormerSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        c0 = spec.dims[0]
        stem = nn.Sequential(nn.Conv2d(spec.in_chans, c0 // 2, 3, stride=2, padding=1), nn.BatchNorm2d(c0 // 2),
                             nn.GELU(), nn.Conv2d(c0 // 2, c0, 3, stride=2, padding=1), nn.BatchNorm2d(c0))
        self.downsample_layers = nn.ModuleList([stem])
        for cin, cout in zip(spec.dims, spec.dims[1:]):
            self.downsample_layers.append(nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1),
                                                        nn.BatchNorm2d(cout)))
        grids = stage_grids(spec, *res)
        self.stages = nn.ModuleList(
            nn.Sequential(*(Block(spec, s, grids[s], attn_mode) for _ in range(depth)))
            for s, depth in enumerate(spec.depths))
        self.norm = nn.BatchNorm2d(spec.dims[-1])
        self.head = nn.Linear(spec.dims[-1], spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        for down, stage in zip(self.downsample_layers, self.stages):
            x = down(x)
            x = stage(x)
        return self.head(self.norm(x).flatten(2).mean(-1))
