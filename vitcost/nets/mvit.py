"""MViTv2 (Li et al. 2022), image variant, as torch modules: conv pooling of Q/K/V, decomposed relative
positions, residual pooling, attention-side channel expansion.

Tree: patch_embed.proj (7x7 stride-4 conv) -> stages.s.blocks.i -> norm -> mean over tokens -> head.
A block on an h x w grid of width D_in with output width D and query stride s:
    y = norm1(x)
    shortcut = maxpool_s(shortcut_proj_attn(y) if D_in != D else x)
    x = shortcut + proj(MHPA(y));  x = x + MLP(norm2(x))
Pooling attention (MViTv2 Sec. 3-4): q, k, v = qkv(y) split into heads [B, n, h*w, d]; each is pooled
by a depthwise k x k conv (stride s for Q, the adaptive KV stride for K/V, padding k//2, no bias,
shared across heads) and normalised over d; the scores add decomposed relative positions
(q against tables gathered by relative distance along h and along w) and the pooled q is added back
to the output (residual pooling).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitcost.analytic.ints import conv_out
from vitcost.errors import SpecError
from vitcost.nets.common import AttentionCore, ConvEmbed, Mlp, check_input, trunc_normal
from vitcost.specs import MViTSpec

LN_EPS = 1e-6


def rel_pos_index(q_size: int, k_size: int) -> Tensor:
    """[q_size, k_size] rows of a (2*max(q_size, k_size) - 1)-row table for query i and key j along one axis:
    the distance i*rq - j*rk + (k_size - 1)*rk, where the coarser grid's positions are stretched by the
    size ratio (rq = max(k/q, 1), rk = max(q/k, 1)) so both grids span the same extent (MViTv2 Sec. 4.1)."""
    rq, rk = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    dist = torch.arange(q_size)[:, None] * rq - torch.arange(k_size)[None, :] * rk + (k_size - 1) * rk
    return dist.long()


class MultiScaleAttention(AttentionCore):
    """Pooling attention on an h x w grid: x [B, h*w, D_in] -> [B, hq*wq, D]. The scores, the two
    rel-pos products and the residual add run here:
      q k^T:  [B, n, Nq, d] @ [B, n, d, Nk]                       B*n*Nq*Nk*d MACs
      rel h:  q [B*n, hq, wq, d] @ R_h^T [hq, d, hk] -> [B*n, hq, wq, hk]   B*n*Nq*hk*d MACs
      rel w:  q^T [B*n, wq, hq, d] @ R_w^T [wq, d, wk] -> [B*n, wq, hq, wk] B*n*Nq*wk*d MACs
      @ v:    [B, n, Nq, Nk] @ [B, n, Nk, d]                      B*n*Nq*Nk*d MACs"""

    def __init__(self, dim_in: int, dim: int, heads: int, grid: tuple[int, int], q_stride: int, kv_stride: int,
                 spec: MViTSpec, attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.heads, self.grid, self.dim = heads, grid, dim
        hd, k = dim // heads, spec.pool_kernel
        self.qkv = nn.Linear(dim_in, 3 * dim)
        self.pool_q, self.norm_q = self._pooling(hd, k, q_stride)
        self.pool_k, self.norm_k = self._pooling(hd, k, kv_stride)
        self.pool_v, self.norm_v = self._pooling(hd, k, kv_stride)
        self.proj = nn.Linear(dim, dim)
        self.q_grid = self._pooled(grid, self.pool_q)
        self.k_grid = self._pooled(grid, self.pool_k)
        self.residual_pooling = spec.residual_pooling
        self.rel_pos = spec.rel_pos
        if spec.rel_pos:
            (qh, qw), (kh, kw) = self.q_grid, self.k_grid
            self.rel_pos_h = trunc_normal(2 * max(qh, kh) - 1, hd)
            self.rel_pos_w = trunc_normal(2 * max(qw, kw) - 1, hd)
            self.register_buffer("rel_pos_index_h", rel_pos_index(qh, kh), persistent=False)
            self.register_buffer("rel_pos_index_w", rel_pos_index(qw, kw), persistent=False)

    @staticmethod
    def _pooling(hd: int, k: int, stride: int) -> tuple[nn.Conv2d | None, nn.LayerNorm | None]:
        if k == 1 and stride == 1:  # an identity pooling is left out
            return None, None
        return nn.Conv2d(hd, hd, k, stride=stride, padding=k // 2, groups=hd, bias=False), nn.LayerNorm(hd, LN_EPS)

    @staticmethod
    def _pooled(grid: tuple[int, int], pool: nn.Conv2d | None) -> tuple[int, int]:
        if pool is None:
            return grid
        k, s, p = pool.kernel_size[0], pool.stride[0], pool.padding[0]
        return conv_out(grid[0], k, s, p), conv_out(grid[1], k, s, p)

    def _pool(self, t: Tensor, pool: nn.Conv2d | None, norm: nn.LayerNorm | None) -> Tensor:
        """[B, n, h*w, d] -> conv on [B*n, d, h, w] -> [B, n, ho*wo, d] -> LayerNorm over d."""
        if pool is None:
            return t
        b, n, _, d = t.shape
        t = pool(t.reshape(b * n, *self.grid, d).permute(0, 3, 1, 2))
        return norm(t.reshape(b, n, d, -1).transpose(2, 3))

    def _rel_pos(self, q: Tensor) -> Tensor:
        """Decomposed relative positions: [B, n, Nq, d] -> an additive term [B, n, Nq, Nk]."""
        b, n, _, d = q.shape
        (qh, qw), (kh, kw) = self.q_grid, self.k_grid
        r_h = self.rel_pos_h[self.rel_pos_index_h]  # [qh, kh, d]
        r_w = self.rel_pos_w[self.rel_pos_index_w]  # [qw, kw, d]
        q = q.reshape(b * n, qh, qw, d)
        rel_h = q @ r_h.transpose(1, 2)  # [B*n, qh, qw, kh]
        rel_w = (q.transpose(1, 2) @ r_w.transpose(1, 2)).transpose(1, 2)  # [B*n, qh, qw, kw]
        return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, n, qh * qw, kh * kw)

    def forward(self, x: Tensor) -> Tensor:
        b, nx, _ = x.shape
        hd = self.dim // self.heads
        q, k, v = self.qkv(x).reshape(b, nx, 3, self.heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        q = self._pool(q, self.pool_q, self.norm_q)
        k = self._pool(k, self.pool_k, self.norm_k)
        v = self._pool(v, self.pool_v, self.norm_v)
        x = self.attend(q, k, v, (self._rel_pos(q),) if self.rel_pos else ())
        if self.residual_pooling:
            x = x + q
        return self.proj(x.transpose(1, 2).reshape(b, -1, self.dim))


class MultiScaleBlock(nn.Module):
    """[B, h*w, D_in] -> [B, hq*wq, D]; see the module docstring for the residual path."""

    def __init__(self, dim_in: int, dim: int, heads: int, grid: tuple[int, int], q_stride: int, kv_stride: int,
                 spec: MViTSpec, attn_mode: str) -> None:
        super().__init__()
        self.grid = grid
        self.norm1 = nn.LayerNorm(dim_in, eps=LN_EPS)
        self.shortcut_proj_attn = nn.Linear(dim_in, dim) if dim_in != dim else None
        # kernel s+1, stride s, padding (s+1)//2: for even s the same grid as the stride-s query pooling
        self.shortcut_pool_attn = (nn.MaxPool2d(q_stride + 1, q_stride, (q_stride + 1) // 2)
                                   if q_stride > 1 else None)
        self.attn = MultiScaleAttention(dim_in, dim, heads, grid, q_stride, kv_stride, spec, attn_mode)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * spec.mlp_ratio))
        self.out_grid = self.attn.q_grid
        short = grid
        if self.shortcut_pool_attn is not None:
            short = tuple(conv_out(g, q_stride + 1, q_stride, (q_stride + 1) // 2) for g in grid)
        if short != self.out_grid:
            raise SpecError(f"MViTSpec: a query stride of {q_stride} with pool kernel {spec.pool_kernel} pools "
                            f"the {grid[0]}x{grid[1]} grid to {self.out_grid[0]}x{self.out_grid[1]} but the "
                            f"residual to {short[0]}x{short[1]}; use an even stride and an odd kernel.")

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm1(x)
        short = x if self.shortcut_proj_attn is None else self.shortcut_proj_attn(y)
        if self.shortcut_pool_attn is not None:  # [B, h*w, D] -> [B, D, h, w] -> max-pool -> [B, hq*wq, D]
            b, _, d = short.shape
            short = self.shortcut_pool_attn(short.transpose(1, 2).reshape(b, d, *self.grid))
            short = short.flatten(2).transpose(1, 2)
        x = short + self.attn(y)
        return x + self.mlp(self.norm2(x))


class MViTStage(nn.Module):
    def __init__(self, blocks: list[MultiScaleBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class MViTv2(nn.Module):
    """[B, C, H, W] -> [B, num_classes]."""

    def __init__(self, spec: MViTSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        k, s = spec.stem_kernel, spec.stem_stride
        self.patch_embed = ConvEmbed(spec.in_chans, spec.dims[0], k, s, padding=k // 2)
        grid = (conv_out(res[0], k, s, k // 2), conv_out(res[1], k, s, k // 2))
        dim_in = spec.dims[0]
        self.stages = nn.ModuleList()
        for st, (dim, depth, heads) in enumerate(zip(spec.dims, spec.depths, spec.heads)):
            blocks = []
            for i in range(depth):
                blocks.append(MultiScaleBlock(dim_in, dim, heads, grid, spec.q_stride(st) if i == 0 else 1,
                                              spec.kv_stride_at(st), spec, attn_mode))
                grid, dim_in = blocks[-1].out_grid, dim
            self.stages.append(MViTStage(blocks))
        self.norm = nn.LayerNorm(dim_in, eps=LN_EPS)
        self.head = nn.Linear(dim_in, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x).flatten(1, 2)  # [B, h*w, D]
        for stage in self.stages:
            x = stage(x)
        return self.head(self.norm(x).mean(dim=1))
