"""MViT v1 (Fan et al. 2021), as torch modules following SlowFast's `MViT` with conv pooling (see
`specs.MViTv1Spec`): a cube embedding, a class token, a (separable) position embedding, multiscale blocks with
pooling attention and a max-pooled residual, expansion in the MLP of a stage's last block.

Tree: patch_embed.proj (Conv3d) -> cls_token, pos_embed_* -> blocks.i -> norm -> head (on the class token).
A block on a t x h x w grid (plus the class token) of width D, output width D':
    x_block = attn(norm1(x));  x = maxpool(x) + x_block
    x_norm = norm2(x);  x = (proj(x_norm) if D' != D else x) + MLP(x_norm)
Pooling (`attention_pool` in SlowFast): the class token is set aside, the other tokens reshaped to
[B*n, t, h, w, d] and permuted to a contiguous [B*n, d, t, h, w], pooled (a depthwise Conv3d for q, k, v;
a MaxPool3d for the residual), flattened back, the class token concatenated in front, then (q, k, v)
LayerNorm over d. An image [B, C, H, W] is run as a clip of one frame ([B, C, 1, H, W], a view).
The attention core is `AttentionCore.attend` (math: q is scaled before q k^T; sdpa: fused)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitcost.analytic.mvit1 import pools, skip_kernel
from vitcost.nets.common import AttentionCore, Mlp, check_input, trunc_normal
from vitcost.specs import MViTv1Spec

LN_EPS = 1e-6
Grid = tuple[int, int, int]


def pooled_grid(grid: Grid, pool: nn.Module | None) -> Grid:
    """The grid a Conv3d or MaxPool3d leaves (floor((g + 2p - k) / s) + 1 on each axis)."""
    if pool is None:
        return grid
    k, s, p = (tuple(v) if isinstance(v, (tuple, list)) else (v,) * 3
               for v in (pool.kernel_size, pool.stride, pool.padding))
    return tuple((g + 2 * pi - ki) // si + 1 for g, ki, si, pi in zip(grid, k, s, p))  # type: ignore[return-value]


def attention_pool(x: Tensor, pool: nn.Module | None, grid: Grid, norm: nn.Module | None = None) -> Tensor:
    """[B, n, 1 + t*h*w, d] -> [B, n, 1 + t'*h'*w', d]: the class token set aside, the rest reshaped to
    [B*n, t, h, w, d] and permuted to a contiguous [B*n, d, t, h, w], pooled, flattened back (a transposed
    view), the class token concatenated in front, then `norm`."""
    if pool is None:
        return x
    cls, rest = x[:, :, :1], x[:, :, 1:]
    b, n, _, d = rest.shape
    rest = rest.reshape(b * n, *grid, d).permute(0, 4, 1, 2, 3).contiguous()
    rest = pool(rest)
    rest = rest.reshape(b, n, d, -1).transpose(2, 3)
    x = torch.cat((cls, rest), dim=2)
    return x if norm is None else norm(x)


class MultiScaleAttention(AttentionCore):
    """Pooling attention on a t x h x w grid plus the class token: [B, N, D] -> [B, Nq, D].
      q k^T:  [B, n, Nq, d] @ [B, n, d, Nk]     B*n*Nq*Nk*d MACs
      @ v:    [B, n, Nq, Nk] @ [B, n, Nk, d]     B*n*Nq*Nk*d MACs"""

    def __init__(self, dim: int, heads: int, grid: Grid, q_stride: tuple, kv_stride: tuple, spec: MViTv1Spec,
                 attn_mode: str) -> None:
        super().__init__(attn_mode)
        self.heads, self.grid, self.dim = heads, grid, dim
        hd, k = dim // heads, tuple(spec.pool_kernel)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.pool_q, self.norm_q = self._pooling(hd, k, q_stride, pools(k, q_stride, True))
        self.pool_k, self.norm_k = self._pooling(hd, k, kv_stride, pools(k, kv_stride, False))
        self.pool_v, self.norm_v = self._pooling(hd, k, kv_stride, pools(k, kv_stride, False))
        self.proj = nn.Linear(dim, dim)
        self.q_grid = pooled_grid(grid, self.pool_q)

    @staticmethod
    def _pooling(hd: int, k: tuple, stride: tuple, on: bool) -> tuple[nn.Conv3d | None, nn.LayerNorm | None]:
        if not on:
            return None, None
        conv = nn.Conv3d(hd, hd, k, stride=stride, padding=tuple(x // 2 for x in k), groups=hd, bias=False)
        return conv, nn.LayerNorm(hd, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        hd = self.dim // self.heads
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = attention_pool(q, self.pool_q, self.grid, self.norm_q)
        k = attention_pool(k, self.pool_k, self.grid, self.norm_k)
        v = attention_pool(v, self.pool_v, self.grid, self.norm_v)
        x = self.attend(q, k, v).transpose(1, 2).reshape(b, -1, self.dim)
        return self.proj(x)


class MultiScaleBlock(nn.Module):
    """[B, 1 + t*h*w, D] -> [B, 1 + t'*h'*w', D']; see the module docstring."""

    def __init__(self, dim: int, dim_out: int, heads: int, grid: Grid, q_stride: tuple, kv_stride: tuple,
                 spec: MViTv1Spec, attn_mode: str) -> None:
        super().__init__()
        self.grid = grid
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MultiScaleAttention(dim, heads, grid, q_stride, kv_stride, spec, attn_mode)
        ks = skip_kernel(q_stride)
        self.pool_skip = (nn.MaxPool3d(ks, q_stride, tuple(x // 2 for x in ks)) if max(q_stride) > 1 else None)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * spec.mlp_ratio), dim_out)
        self.proj = nn.Linear(dim, dim_out) if dim_out != dim else None
        self.out_grid = self.attn.q_grid

    def forward(self, x: Tensor) -> Tensor:
        x_block = self.attn(self.norm1(x))
        x_res = attention_pool(x.unsqueeze(1), self.pool_skip, self.grid).squeeze(1)
        x = x_res + x_block
        x_norm = self.norm2(x)
        x_mlp = self.mlp(x_norm)
        if self.proj is not None:
            x = self.proj(x_norm)
        return x + x_mlp


class MViTv1(nn.Module):
    """[B, C, T, H, W] (or an image [B, C, H, W]: one frame) -> [B, num_classes]."""

    def __init__(self, spec: MViTv1Spec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        frames = getattr(res, "frames", None) or 1
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(spec.in_chans, spec.dims[0], tuple(spec.patch_kernel),
                                          stride=tuple(spec.patch_stride), padding=tuple(spec.patch_padding))
        grid = pooled_grid((frames, *res), self.patch_embed.proj)
        d, tokens = spec.dims[0], grid[0] * grid[1] * grid[2]
        self.grid = grid
        self.cls_token = trunc_normal(1, 1, d)
        if spec.sep_pos_embed:
            self.pos_embed_spatial = trunc_normal(1, grid[1] * grid[2], d)
            self.pos_embed_temporal = trunc_normal(1, grid[0], d)
            self.pos_embed_class = trunc_normal(1, 1, d)
        else:
            self.pos_embed = trunc_normal(1, 1 + tokens, d)
        blocks, dim, last = [], d, len(spec.depths) - 1
        for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
            for i in range(depth):
                dim_out = spec.dims[s + 1] if i == depth - 1 and s < last else spec.dims[s]
                blocks.append(MultiScaleBlock(dim, dim_out, heads, grid, spec.q_stride(s) if i == 0 else (1, 1, 1),
                                              spec.kv_stride_at(s), spec, attn_mode))
                grid, dim = blocks[-1].out_grid, dim_out
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, spec.num_classes)

    def _pos_embed(self) -> Tensor:
        """[1, 1 + t*h*w, D]: separable rows (spatial repeated over t + temporal repeated over h*w, the class
        row in front), or the joint table."""
        if not self.spec.sep_pos_embed:
            return self.pos_embed
        t, h, w = self.grid
        pos = self.pos_embed_spatial.repeat(1, t, 1) + torch.repeat_interleave(self.pos_embed_temporal, h * w, dim=1)
        return torch.cat([self.pos_embed_class, pos], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        if x.dim() == 4:  # an image: a clip of one frame
            x = x.unsqueeze(2)
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)  # [B, t*h*w, D], a view of the conv output
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self._pos_embed()
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.head(x[:, 0])
