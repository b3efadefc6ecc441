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

On a clip [B, C, T, H, W] of T > 1 frames (a `Res` with frames) the modules are SlowFast's video MViTv2
(`slowfast/models/attention.py`): a Conv3d cube embedding, Conv3d pooling of q, k, v, a MaxPool3d shortcut,
and with `rel_pos_t` a third, temporal table in the decomposed relative positions (a third product, added to
the scores with the others). With `cls_token` a class token is concatenated in front of the embedded tokens;
every pooling sets it aside and puts it back in front, the relative positions and the residual pooling skip
its row and column (the residual pooling adds q in place, as SlowFast's), and the head reads it after the
final norm. An image, or a clip of one frame, is the image model with the 2-D modules above
(`MViTSpec.at_frames`).

Hybrid window attention (spec.window; the windowed attention of detectron2's MViT backbone; images, or a
clip of one frame): after the pooling, q and k/v are each zero-padded to whole windows and split into them
(`window_partition`), the attention above runs inside each window, and its output is merged back and
cropped (`window_merge`) before the pooled q is added (residual pooling). The block around it stays timm's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcost.analytic.ints import conv_out
from vitcost.analytic.mvit1 import pools, skip_kernel
from vitcost.errors import SpecError
from vitcost.nets.common import AttentionCore, ConvEmbed, Mlp, check_input, trunc_normal, window_reverse
from vitcost.nets.common import window_partition as common_window_partition
from vitcost.nets.mvit1 import pooled_grid
from vitcost.specs import MViTSpec

LN_EPS = 1e-6
Grid = tuple[int, ...]  # the token grid: (h, w) for an image, (t, h, w) for a clip


def rel_pos_index(q_size: int, k_size: int) -> Tensor:
    """[q_size, k_size] rows of a (2*max(q_size, k_size) - 1)-row table for query i and key j along one axis:
    the distance i*rq - j*rk + (k_size - 1)*rk, where the coarser grid's positions are stretched by the
    size ratio (rq = max(k/q, 1), rk = max(q/k, 1)) so both grids span the same extent (MViTv2 Sec. 4.1)."""
    rq, rk = max(k_size / q_size, 1.0), max(q_size / k_size, 1.0)
    dist = torch.arange(q_size)[:, None] * rq - torch.arange(k_size)[None, :] * rk + (k_size - 1) * rk
    return dist.long()


def _einsum_axis(r_q: Tensor, table: Tensor, axis: int) -> Tensor:
    """torch.einsum("byhwc,hkc->byhwk", r_q, table) for axis 2 (h), "byhwc,wkc->byhwk" for axis 3 (w), and on a
    clip r_q [B, n, qt, qh, qw, d] likewise along t, h or w, as the einsum runs it: the axis moved first and the
    others flattened, [A, B*n*rest, d] (a copy unless that is a view: the last grid axis, or one whose
    preceding axes are all 1 long), a batched matmul with table^T [A, d, k], and the result viewed back as
    [B, n, *grid, k]. Written as the matmul so that fvcore counts it exactly (its einsum handle rounds to four
    digits)."""
    last = r_q.dim() - 1
    rest = [i for i in range(last) if i != axis]
    out = r_q.permute(axis, *rest, last).reshape(r_q.shape[axis], -1, r_q.shape[last]) @ table.transpose(1, 2)
    out = out.view(r_q.shape[axis], *(r_q.shape[i] for i in rest), -1)  # [A, B, n, *rest, k]
    return out.permute(*range(1, axis + 1), 0, *range(axis + 1, last + 1))


def window_partition(t: Tensor, grid: tuple[int, int], m: int) -> Tensor:
    """[B, n, h*w, d] -> [B*n, W, m*m, d]: the grid zero-padded at the bottom and right to multiples of m
    (a new tensor when padded), cut into its W windows by `common.window_partition` (a copy unless the
    windows are single rows or columns of the padded grid, when the reorder is a view)."""
    b, n, _, d = t.shape
    (h, w), hp, wp = grid, -(-grid[0] // m) * m, -(-grid[1] // m) * m
    t = t.reshape(b * n, h, w, d)
    if (hp, wp) != (h, w):
        t = F.pad(t, (0, 0, 0, wp - w, 0, hp - h))
    return common_window_partition(t, m, m).view(b * n, (hp // m) * (wp // m), m * m, d)


def window_merge(t: Tensor, batch: int, grid: tuple[int, int], m: int) -> Tensor:
    """The inverse of `window_partition` for `batch` images: [B*n, W, m*m, d] -> [B, n, h*w, d]
    (`common.window_reverse`: a copy unless the reorder is a view), and a second copy when the padding is
    cropped."""
    bn, _, _, d = t.shape
    (h, w), hp, wp = grid, -(-grid[0] // m) * m, -(-grid[1] // m) * m
    t = window_reverse(t.view(-1, m * m, d), m, m, hp, wp)
    if (hp, wp) != (h, w):
        t = t[:, :h, :w].contiguous()
    return t.view(batch, bn // batch, h * w, d)


def is_clip(res: tuple[int, int]) -> bool:
    """Whether the net runs 3-D modules: on a clip of more than one frame (one frame is the image model,
    `MViTSpec.at_frames`)."""
    frames = getattr(res, "frames", None)
    return frames is not None and frames > 1


def _pool_conv(hd: int, kernel: Grid, stride: Grid) -> tuple[nn.Module | None, nn.LayerNorm | None]:
    """A depthwise pooling conv (2-D or 3-D as the grid) and its norm; an identity pooling is left out."""
    if not pools(kernel, stride, False):
        return None, None
    conv = nn.Conv3d if len(kernel) == 3 else nn.Conv2d
    return (conv(hd, hd, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), groups=hd, bias=False),
            nn.LayerNorm(hd, LN_EPS))


class MultiScaleAttention(AttentionCore):
    """Pooling attention on an h x w grid (a clip: t x h x w), plus a class token with `cls_token`:
    x [B, c + h*w, D_in] -> [B, c + hq*wq, D]. The scores, the rel-pos products and the residual add run here
    (Nq', Nk': the grid's queries and keys, without the class token):
      q k^T:  [B, n, Nq, d] @ [B, n, d, Nk]                       B*n*Nq*Nk*d MACs
      rel h:  q [hq, B*n*wq, d] @ R_h^T [hq, d, hk] -> [B, n, hq, wq, hk]   B*n*Nq'*hk*d MACs
      rel w:  q [wq, B*n*hq, d] @ R_w^T [wq, d, wk] -> [B, n, hq, wq, wk]   B*n*Nq'*wk*d MACs
      rel t:  q [tq, B*n*hq*wq, d] @ R_t^T [tq, d, tk]                      B*n*Nq'*tk*d MACs (rel_pos_t)
      @ v:    [B, n, Nq, Nk] @ [B, n, Nk, d]                      B*n*Nq*Nk*d MACs"""

    def __init__(self, dim_in: int, dim: int, heads: int, grid: Grid, q_stride: Grid, kv_stride: Grid,
                 spec: MViTSpec, attn_mode: str, window: int = 0) -> None:
        super().__init__(attn_mode)
        self.heads, self.grid, self.dim = heads, grid, dim
        self.cls = int(spec.cls_token)
        hd, k = dim // heads, spec.pool_kernel
        kernel = (spec.pool_kernel_t, k, k)[3 - len(grid):]
        self.qkv = nn.Linear(dim_in, 3 * dim)
        self.pool_q, self.norm_q = _pool_conv(hd, kernel, q_stride)
        self.pool_k, self.norm_k = _pool_conv(hd, kernel, kv_stride)
        self.pool_v, self.norm_v = _pool_conv(hd, kernel, kv_stride)
        self.proj = nn.Linear(dim, dim)
        self.q_grid = pooled_grid(grid, self.pool_q)
        self.k_grid = pooled_grid(grid, self.pool_k)
        self.residual_pooling = spec.residual_pooling
        self.rel_pos = spec.rel_pos
        g = len(grid)
        # the grids one score matrix spans: the pooled grids, or one window of each (window on the input grid)
        self.window = (window // q_stride[-1], window // kv_stride[-1]) if window else ()
        self.att_q, self.att_k = self.q_grid, self.k_grid
        if window:
            self.att_q = (*self.q_grid[:-2], self.window[0], self.window[0])
            self.att_k = (*self.k_grid[:-2], self.window[1], self.window[1])
        # (table, grid axis): h and w, then t on a clip with rel_pos_t
        self.rel_axes = (("h", g - 2), ("w", g - 1)) + ((("t", 0),) if spec.rel_pos_t and g == 3 else ())
        if spec.rel_pos:
            for name, i in self.rel_axes:
                q, kv = self.att_q[i], self.att_k[i]
                setattr(self, f"rel_pos_{name}", trunc_normal(2 * max(q, kv) - 1, hd))
                self.register_buffer(f"rel_pos_index_{name}", rel_pos_index(q, kv), persistent=False)

    def _pool(self, t: Tensor, pool: nn.Module | None, norm: nn.LayerNorm | None) -> Tensor:
        """[B, n, c + h*w, d] -> a contiguous [B*n, d, h, w] copy (the class token set aside) -> conv ->
        [B, n, ho*wo, d] (a transposed view of the conv output; the class token concatenated back in front)
        -> LayerNorm over d. A clip likewise over t x h x w."""
        if pool is None:
            return t
        n, d, g = t.shape[1], t.shape[3], len(self.grid)
        if self.cls:
            cls, t = t[:, :, :self.cls], t[:, :, self.cls:]
        t = t.reshape(-1, *self.grid, d).permute(0, g + 1, *range(1, g + 1)).contiguous()
        t = pool(t)
        t = t.reshape(-1, n, d, math.prod(t.shape[2:])).transpose(2, 3)
        if self.cls:
            t = torch.cat((cls, t), dim=2)
        return norm(t)

    def _add_rel_pos(self, attn: Tensor, q: Tensor) -> Tensor:
        """Decomposed relative positions added to the scores attn [B, n, Nq, Nk] in place, q [B, n, Nq, d]
        (the class token's row and column left alone):
        rel_h = einsum(q [B, n, qh, qw, d], R_h [qh, kh, d]) -> [B, n, qh, qw, kh], rel_w likewise with
        R_w [qw, kw, d] -> [B, n, qh, qw, kw] (`_einsum_axis`; on a clip q is [B, n, qt, qh, qw, d], and
        rel_t with R_t [qt, kt, d]); attn[.., (i_h, i_w), (j_h, j_w)] += rel_h[.., j_h] + rel_w[.., j_w]
        (+ rel_t[.., j_t])."""
        b, n, _, d = q.shape
        c, g = self.cls, len(self.att_q)
        r_q = q[:, :, c:].reshape(b, n, *self.att_q, d)
        rels = [getattr(self, f"rel_pos_{name}")[getattr(self, f"rel_pos_index_{name}")] for name, _ in self.rel_axes]
        for j, (_, axis) in enumerate(self.rel_axes):  # rebinding frees each gathered table
            rels[j] = _einsum_axis(r_q, rels[j], 2 + axis)
        scores = attn[:, :, c:, c:] if c else attn
        total = scores.view(b, n, *self.att_q, *self.att_k)
        for rel, (_, axis) in zip(rels, self.rel_axes):  # [B, n, *q_grid, k] broadcast along key axis `axis`
            total = total + rel.view(*rel.shape[:-1], *(rel.shape[-1] if i == axis else 1 for i in range(g)))
        scores[:] = total.view(scores.shape)
        return attn

    def _rel_pos_term(self, q: Tensor) -> Tensor:
        """The decomposed relative positions as an additive term [B, n, Nq, Nk] (the sdpa path's attn_mask)."""
        b, n, nq, _ = q.shape
        zeros = q.new_zeros(b, n, nq, self.cls + math.prod(self.att_k))
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
        if self.window:  # windows of the pooled (spatial) grids; each partition rebinds, freeing the pooled k and v
            q = window_partition(q, self.q_grid[-2:], self.window[0])
            k = window_partition(k, self.k_grid[-2:], self.window[1])
            v = window_partition(v, self.k_grid[-2:], self.window[1])
        if self.attn_mode == "sdpa":
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=self._rel_pos_term(q) if self.rel_pos else None)
        else:
            attn = (q * hd**-0.5) @ k.transpose(-2, -1)
            if self.rel_pos:
                attn = self._add_rel_pos(attn, q)
            attn = attn.softmax(dim=-1)
            x = attn @ v
        if self.window:
            x = window_merge(x, b, self.q_grid[-2:], self.window[0])
        if self.residual_pooling and self.cls:  # in place, past the class token (SlowFast's)
            x[:, :, self.cls:] += q[:, :, self.cls:]
        elif self.residual_pooling:
            x = x + pooled_q
        x = x.transpose(1, 2).reshape(b, -1, self.dim)
        return self.proj(x)


class MultiScaleBlock(nn.Module):
    """[B, c + h*w, D_in] -> [B, c + hq*wq, D] (a clip: over t x h x w); see the module docstring for the
    residual path."""

    def __init__(self, dim_in: int, dim: int, heads: int, grid: Grid, strides: tuple[Grid, Grid],
                 spec: MViTSpec, attn_mode: str, dim_out: int = 0, window: int = 0) -> None:
        super().__init__()
        self.grid, self.cls = grid, int(spec.cls_token)
        q_stride, kv_stride = strides
        self.norm1 = nn.LayerNorm(dim_in, eps=LN_EPS)
        self.shortcut_proj_attn = nn.Linear(dim_in, dim) if dim_in != dim else None
        # kernel s+1, stride s, padding (s+1)//2: for even s the same grid as the stride-s query pooling
        ks = skip_kernel(q_stride)
        pool = nn.MaxPool3d if len(grid) == 3 else nn.MaxPool2d
        self.shortcut_pool_attn = (pool(ks, q_stride, tuple(k // 2 for k in ks)) if max(q_stride) > 1 else None)
        self.attn = MultiScaleAttention(dim_in, dim, heads, grid, q_stride, kv_stride, spec, attn_mode, window)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        dim_out = dim_out or dim
        self.shortcut_proj_mlp = nn.Linear(dim, dim_out) if dim_out != dim else None
        self.mlp = Mlp(dim, int(dim * spec.mlp_ratio), dim_out)
        self.out_grid = self.attn.q_grid
        short = pooled_grid(grid, self.shortcut_pool_attn)
        if short != self.out_grid:
            raise SpecError(f"MViTSpec: a query stride of {'x'.join(map(str, q_stride))} with pool kernel "
                            f"{spec.pool_kernel} pools the {'x'.join(map(str, grid))} grid to "
                            f"{'x'.join(map(str, self.out_grid))} but the residual to {'x'.join(map(str, short))}; "
                            "use an even stride and an odd kernel.")

    def _shortcut_pool(self, x: Tensor) -> Tensor:
        """[B, c + h*w, D] -> a contiguous [B, D, h, w] copy (the class token set aside) -> max-pool ->
        [B, hq*wq, D] (a transposed view; the class token concatenated back in front). A clip likewise."""
        if self.shortcut_pool_attn is None:
            return x
        if self.cls:
            cls, x = x[:, :self.cls], x[:, self.cls:]
        b, _, d = x.shape
        g = len(self.grid)
        x = x.reshape(b, *self.grid, d).permute(0, g + 1, *range(1, g + 1)).contiguous()
        x = self.shortcut_pool_attn(x)
        x = x.reshape(b, d, -1).transpose(1, 2)
        return torch.cat((cls, x), dim=1) if self.cls else x

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
    """[B, C, H, W] (a clip: [B, C, T, H, W]) -> [B, num_classes]."""

    def __init__(self, spec: MViTSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        spec = spec.at_frames(getattr(res, "frames", None) or 1)
        self.spec, self.res = spec, res
        self.clip = is_clip(res)
        k, s = spec.stem_kernel, spec.stem_stride
        if self.clip:  # the cube embedding
            self.patch_embed = nn.Module()
            self.patch_embed.proj = nn.Conv3d(spec.in_chans, spec.dims[0], (spec.stem_kernel_t, k, k),
                                              stride=(spec.stem_stride_t, s, s),
                                              padding=(spec.stem_padding_t, k // 2, k // 2))
            grid: Grid = pooled_grid((res.frames, *res), self.patch_embed.proj)
        else:
            self.patch_embed = ConvEmbed(spec.in_chans, spec.dims[0], k, s, padding=k // 2)
            grid = (conv_out(res[0], k, s, k // 2), conv_out(res[1], k, s, k // 2))
        self.cls_token = trunc_normal(1, 1, spec.dims[0]) if spec.cls_token else None
        dim_in = spec.dims[0]
        self.stages = nn.ModuleList()
        for st, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
            blocks = []
            for i in range(depth):
                dim, dim_out = spec.block_dims(st, i, dim_in)
                strides = tuple(x[3 - len(grid):] for x in spec.strides3(st, i))
                blocks.append(MultiScaleBlock(dim_in, dim, heads, grid, strides, spec, attn_mode, dim_out,
                                              spec.block_window(st, i)))
                grid, dim_in = blocks[-1].out_grid, dim_out
            self.stages.append(MViTStage(blocks))
        self.norm = nn.LayerNorm(dim_in, eps=LN_EPS)
        self.head = nn.Linear(dim_in, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        if self.clip:
            x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        else:
            x = self.patch_embed(x if x.dim() == 4 else x[:, :, 0]).flatten(1, 2)  # [B, h*w, D]; one frame
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for stage in self.stages:
            x = stage(x)
        if self.cls_token is not None:
            return self.head(self.norm(x)[:, 0])
        return self.head(self.norm(x).mean(dim=1))
