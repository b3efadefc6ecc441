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
to the output (residual pooling). With expand_attn off (timm's mvitv2_large) the channels widen instead
in the last block of a stage: x = x + proj(MHPA(y)) at D_in, then x = shortcut_proj_mlp(norm2(x)) +
MLP(norm2(x)) with fc2 writing the next stage's width.

The forward follows timm's `mvitv2.py` (the implementation people run) where that decides which tensors
are alive: the attention keeps the whole qkv output referenced until it returns; each of q, k, v is
copied to a contiguous [B*n, d, h, w] grid for its pooling conv, and normalised from a transposed view
of the conv output; the relative positions are two einsums (written as the matmuls they run) whose
broadcast sum with the scores (two score-sized temporaries) is written back into the scores in place;
the softmax output stays referenced until the module returns. The block keeps norm1's output and the
shortcut until norm2 has run (timm rebinds `x_norm` and `x_shortcut` only then). timm has no fused path
for MViTv2; the sdpa path here passes the same relative-position sum as attn_mask.

Hybrid window attention (spec.window; the windowed attention of detectron2's MViT backbone): after the
pooling, q and k/v are each zero-padded to whole windows and split into them (`window_partition`), the
attention above runs inside each window, and its output is merged back and cropped (`window_merge`)
before the pooled q is added (residual pooling). The block around it stays timm's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def _einsum_axis(r_q: Tensor, table: Tensor, axis: int) -> Tensor:
    """torch.einsum("byhwc,hkc->byhwk", r_q, table) for axis 2 (h), "byhwc,wkc->byhwk" for axis 3 (w), as
    the einsum runs it: r_q [B, n, qh, qw, d] with the axis moved first and the others flattened,
    [A, B*n*rest, d] (a copy unless that is a view: for axis h when B*n > 1 and qh, qw > 1), a batched
    matmul with table^T [A, d, k], and the result viewed back as [B, n, qh, qw, k]. Written as the matmul
    so that fvcore counts it exactly (its einsum handle rounds to four digits)."""
    b, n, qh, qw, d = r_q.shape
    order = (2, 0, 1, 3, 4) if axis == 2 else (3, 0, 1, 2, 4)
    out = r_q.permute(*order).reshape(r_q.shape[axis], -1, d) @ table.transpose(1, 2)  # [A, B*n*rest, k]
    if axis == 2:
        return out.view(qh, b, n, qw, -1).permute(1, 2, 0, 3, 4)
    return out.view(qw, b, n, qh, -1).permute(1, 2, 3, 0, 4)


def window_partition(t: Tensor, grid: tuple[int, int], m: int) -> Tensor:
    """[B, n, h*w, d] -> [B*n, W, m*m, d]: the grid zero-padded at the bottom and right to multiples of m
    (a new tensor when padded), cut into its W windows, row-major (a copy unless the windows are single
    rows or columns of the padded grid, when the reorder is a view)."""
    b, n, _, d = t.shape
    (h, w), hp, wp = grid, -(-grid[0] // m) * m, -(-grid[1] // m) * m
    t = t.reshape(b * n, h, w, d)
    if (hp, wp) != (h, w):
        t = F.pad(t, (0, 0, 0, wp - w, 0, hp - h))
    t = t.view(b * n, hp // m, m, wp // m, m, d).transpose(2, 3).contiguous()
    return t.view(b * n, (hp // m) * (wp // m), m * m, d)


def window_merge(t: Tensor, batch: int, grid: tuple[int, int], m: int) -> Tensor:
    """The inverse of `window_partition` for `batch` images: [B*n, W, m*m, d] -> [B, n, h*w, d], a copy
    unless the reorder is a view, and a second one when the padding is cropped."""
    bn, _, _, d = t.shape
    (h, w), hp, wp = grid, -(-grid[0] // m) * m, -(-grid[1] // m) * m
    t = t.view(bn, hp // m, wp // m, m, m, d).transpose(2, 3).contiguous().view(bn, hp, wp, d)
    if (hp, wp) != (h, w):
        t = t[:, :h, :w].contiguous()
    return t.view(batch, bn // batch, h * w, d)


class MultiScaleAttention(AttentionCore):
    """Pooling attention on an h x w grid: x [B, h*w, D_in] -> [B, hq*wq, D]. The scores, the two
    rel-pos products and the residual add run here:
      q k^T:  [B, n, Nq, d] @ [B, n, d, Nk]                       B*n*Nq*Nk*d MACs
      rel h:  q [hq, B*n*wq, d] @ R_h^T [hq, d, hk] -> [B, n, hq, wq, hk]   B*n*Nq*hk*d MACs
      rel w:  q [wq, B*n*hq, d] @ R_w^T [wq, d, wk] -> [B, n, hq, wq, wk]   B*n*Nq*wk*d MACs
      @ v:    [B, n, Nq, Nk] @ [B, n, Nk, d]                      B*n*Nq*Nk*d MACs"""

    def __init__(self, dim_in: int, dim: int, heads: int, grid: tuple[int, int], q_stride: int, kv_stride: int,
                 spec: MViTSpec, attn_mode: str, dim_out: int = 0, window: int = 0) -> None:
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
        # the grids one score matrix spans: the pooled grids, or one window of each (window on the input grid)
        self.window = (window // q_stride, window // kv_stride) if window else ()
        self.att_q, self.att_k = ((self.window[0],) * 2, (self.window[1],) * 2) if window else (self.q_grid,
                                                                                               self.k_grid)
        if spec.rel_pos:
            (qh, qw), (kh, kw) = self.att_q, self.att_k
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
        """[B, n, h*w, d] -> a contiguous [B*n, d, h, w] copy -> conv -> [B, n, ho*wo, d] (a transposed view
        of the conv output) -> LayerNorm over d."""
        if pool is None:
            return t
        n, d = t.shape[1], t.shape[3]
        t = t.reshape(-1, *self.grid, d).permute(0, 3, 1, 2).contiguous()
        t = pool(t)
        t = t.reshape(-1, n, d, t.shape[2] * t.shape[3]).transpose(2, 3)
        return norm(t)

    def _add_rel_pos(self, attn: Tensor, q: Tensor) -> Tensor:
        """Decomposed relative positions added to the scores attn [B, n, Nq, Nk] in place, q [B, n, Nq, d]:
        rel_h = einsum(q [B, n, qh, qw, d], R_h [qh, kh, d]) -> [B, n, qh, qw, kh], rel_w likewise with
        R_w [qw, kw, d] -> [B, n, qh, qw, kw] (`_einsum_axis`);
        attn[.., (i_h, i_w), (j_h, j_w)] += rel_h[.., j_h] + rel_w[.., j_w]."""
        b, n, _, d = q.shape
        (qh, qw), (kh, kw) = self.att_q, self.att_k
        rel_h = self.rel_pos_h[self.rel_pos_index_h]  # [qh, kh, d]
        rel_w = self.rel_pos_w[self.rel_pos_index_w]  # [qw, kw, d]
        r_q = q.reshape(b, n, qh, qw, d)
        rel_h = _einsum_axis(r_q, rel_h, 2)  # rebinding frees each gathered table
        rel_w = _einsum_axis(r_q, rel_w, 3)
        attn[:] = (attn.view(b, n, qh, qw, kh, kw) + rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).view(attn.shape)
        return attn

    def _rel_pos_term(self, q: Tensor) -> Tensor:
        """The decomposed relative positions as an additive term [B, n, Nq, Nk] (the sdpa path's attn_mask)."""
        b, n, nq, _ = q.shape
        zeros = q.new_zeros(b, n, nq, self.att_k[0] * self.att_k[1])
        return self._add_rel_pos(zeros, q)

    def forward(self, x: Tensor) -> Tensor:
        b, nx, _ = x.shape
        hd = self.dim // self.heads
        qkv = self.qkv(x).reshape(b, nx, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = self._pool(q, self.pool_q, self.norm_q)
        k = self._pool(k, self.pool_k, self.norm_k)
        v = self._pool(v, self.pool_v, self.norm_v)
        pooled_q = q
        if self.window:  # windows of the pooled grids; each partition rebinds, freeing the pooled k and v
            q = window_partition(q, self.q_grid, self.window[0])
            k = window_partition(k, self.k_grid, self.window[1])
            v = window_partition(v, self.k_grid, self.window[1])
        if self.attn_mode == "sdpa":
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=self._rel_pos_term(q) if self.rel_pos else None)
        else:
            attn = (q * hd**-0.5) @ k.transpose(-2, -1)
            if self.rel_pos:
                attn = self._add_rel_pos(attn, q)
            attn = attn.softmax(dim=-1)
            x = attn @ v
        if self.window:
            x = window_merge(x, b, self.q_grid, self.window[0])
        if self.residual_pooling:
            x = x + pooled_q
        x = x.transpose(1, 2).reshape(b, -1, self.dim)
        return self.proj(x)


class MultiScaleBlock(nn.Module):
    """[B, h*w, D_in] -> [B, hq*wq, D]; see the module docstring for the residual path."""

    def __init__(self, dim_in: int, dim: int, heads: int, grid: tuple[int, int], q_stride: int, kv_stride: int,
                 spec: MViTSpec, attn_mode: str, dim_out: int = 0, window: int = 0) -> None:
        super().__init__()
        self.grid = grid
        self.norm1 = nn.LayerNorm(dim_in, eps=LN_EPS)
        self.shortcut_proj_attn = nn.Linear(dim_in, dim) if dim_in != dim else None
        # kernel s+1, stride s, padding (s+1)//2: for even s the same grid as the stride-s query pooling
        self.shortcut_pool_attn = (nn.MaxPool2d(q_stride + 1, q_stride, (q_stride + 1) // 2)
                                   if q_stride > 1 else None)
        self.attn = MultiScaleAttention(dim_in, dim, heads, grid, q_stride, kv_stride, spec, attn_mode,
                                        window=window)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        dim_out = dim_out or dim
        self.shortcut_proj_mlp = nn.Linear(dim, dim_out) if dim_out != dim else None
        self.mlp = Mlp(dim, int(dim * spec.mlp_ratio), dim_out)
        self.out_grid = self.attn.q_grid
        short = grid
        if self.shortcut_pool_attn is not None:
            short = tuple(conv_out(g, q_stride + 1, q_stride, (q_stride + 1) // 2) for g in grid)
        if short != self.out_grid:
            raise SpecError(f"MViTSpec: a query stride of {q_stride} with pool kernel {spec.pool_kernel} pools "
                            f"the {grid[0]}x{grid[1]} grid to {self.out_grid[0]}x{self.out_grid[1]} but the "
                            f"residual to {short[0]}x{short[1]}; use an even stride and an odd kernel.")

    def _shortcut_pool(self, x: Tensor) -> Tensor:
        """[B, h*w, D] -> a contiguous [B, D, h, w] copy -> max-pool -> [B, hq*wq, D] (a transposed view)."""
        if self.shortcut_pool_attn is None:
            return x
        b, _, d = x.shape
        x = x.reshape(b, *self.grid, d).permute(0, 3, 1, 2).contiguous()
        x = self.shortcut_pool_attn(x)
        return x.reshape(b, d, -1).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        x_norm = self.norm1(x)
        x_shortcut = x if self.shortcut_proj_attn is None else self.shortcut_proj_attn(x_norm)
        x_shortcut = self._shortcut_pool(x_shortcut)
        x = x_shortcut + self.attn(x_norm)
        x_norm = self.norm2(x)
        x_shortcut = x if self.shortcut_proj_mlp is None else self.shortcut_proj_mlp(x_norm)
        return x_shortcut + self.mlp(x_norm)


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
        for st, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
            blocks = []
            for i in range(depth):
                dim, dim_out = spec.block_dims(st, i, dim_in)
                blocks.append(MultiScaleBlock(dim_in, dim, heads, grid, spec.q_stride(st) if i == 0 else 1,
                                              spec.block_kv_stride(st, i), spec, attn_mode, dim_out,
                                              spec.block_window(st, i)))
                grid, dim_in = blocks[-1].out_grid, dim_out
            self.stages.append(MViTStage(blocks))
        self.norm = nn.LayerNorm(dim_in, eps=LN_EPS)
        self.head = nn.Linear(dim_in, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x).flatten(1, 2)  # [B, h*w, D]
        for stage in self.stages:
            x = stage(x)
        return self.head(self.norm(x).mean(dim=1))
