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

The forward keeps the tensors alive that timm's does, which decides the memory. A plain ViT follows
`timm/models/vision_transformer.py`: `blocks` is an nn.Sequential (its caller keeps the embedded tokens
referenced until the last block returns); the class-token concat and the position add happen in a
method whose caller still holds the patch tokens; the attention keeps qkv, the scaled q and the
softmax output referenced until it returns. A model with windows, relative positions or a neck follows
`timm/models/vision_transformer_sam.py` (timm's only windowed ViT): its attention folds the heads into
the batch, [B*h, N, d] (a copy of the whole qkv when B > 1 and h > 1), adds the relative positions as a
[B*h, N, N] term built by two einsums (written as the matmuls they run) and kept to the end; a block
keeps its input as `shortcut`, rebinds x to norm1's output, then to the window partition (the padded
grid dies unless the partition is its view), then to the attention output and its unpartition. The
pixel model has no timm counterpart and follows the plain ViT.
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
from vitcost.nets.mvit import _einsum_axis, rel_pos_index
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
    """Decomposed relative positions (MViTv2 Sec. 4.1; SAM, as timm's get_decomposed_rel_pos_bias) of
    q [B', N, d] on its gh x gw grid of N = gh*gw tokens, as an additive term [B', N, N] on the scores:
      rel_h = einsum(q [B', gh, gw, d], R_h [gh, gh, d]) -> [B', gh, gw, gh]   B'*N*gh*d MACs
      rel_w = einsum(q [B', gh, gw, d], R_w [gw, gw, d]) -> [B', gh, gw, gw]   B'*N*gw*d MACs
      term[(i_h, i_w), (j_h, j_w)] = rel_h[i_h, i_w, j_h] + rel_w[i_h, i_w, j_w]
    where R_h = table_h[index_h] gathers the table row of each distance i_h - j_h (and R_w along w). The
    einsums run as `nets.mvit._einsum_axis` (their matmuls, counted exactly by fvcore)."""
    b, _, d = q.shape
    gh, gw = grid
    r_h, r_w = table_h[index_h], table_w[index_w]  # [gh, gh, d], [gw, gw, d], referenced until the return
    r_q = q.reshape(b, 1, gh, gw, d)
    rel_h = _einsum_axis(r_q, r_h, 2).squeeze(1)  # [B', gh, gw, gh]
    rel_w = _einsum_axis(r_q, r_w, 3).squeeze(1)  # [B', gh, gw, gw]
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]  # laid out as rel_h: a copy to reshape when B' > 1
    return bias.reshape(-1, gh * gw, gh * gw)


class Attention(AttentionCore):
    """Global multi-head self-attention over N tokens of width D, h heads of width d = D/h:
    qkv [B, N, D] -> [B, N, 3D]; q k^T and scores @ v on [B, h, N, d] (2*B*h*N^2*d MACs, here);
    proj [B, N, D] -> [B, N, D]. With `rel_grid` (gh, gw), the N = gh*gw tokens get decomposed relative
    positions from two tables of 2*gh-1 and 2*gw-1 rows (the additive term goes to the math path's
    scores, or to sdpa as its attn_mask). With `linear`, linear attention replaces the core
    (`linear_attend`, the same code on both paths). `fold_heads`: SAM's layout, q, k, v as [B*h, N, d]
    (see the module docstring); otherwise timm's ViT layout, [B, h, N, d] views of qkv."""

    def __init__(self, dim: int, heads: int, attn_mode: str, rel_grid: tuple[int, int] | None = None,
                 linear: bool = False, fold_heads: bool = False, k_bias: bool = True,
                 rope: tuple[int, tuple[int, int]] | None = None, topk: int = 0) -> None:
        super().__init__(attn_mode)
        self.heads, self.linear, self.fold_heads, self.topk = heads, linear, fold_heads, topk
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim) if k_bias else QVBiasLinear(dim)
        self.rope_prefix = rope[0] if rope else 0
        if rope:
            sin, cos = rope_tables(dim // heads, rope[1])
            self.register_buffer("rope_sin", sin, persistent=False)
            self.register_buffer("rope_cos", cos, persistent=False)
        else:
            self.rope_sin = self.rope_cos = None
        self.proj = nn.Linear(dim, dim)
        self.rel_grid = rel_grid
        if rel_grid:
            gh, gw = rel_grid
            self.rel_pos_h = trunc_normal(2 * gh - 1, dim // heads)
            self.rel_pos_w = trunc_normal(2 * gw - 1, dim // heads)
            self.register_buffer("rel_pos_index_h", rel_pos_index(gh, gh), persistent=False)
            self.register_buffer("rel_pos_index_w", rel_pos_index(gw, gw), persistent=False)

    def forward(self, x: Tensor, rank: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """The attention's output; with `rank`, also EViT's ranking of the patch tokens: the class token's
        attention to each of them, [B, N - 1], averaged over the heads (computed apart from the attention)."""
        b, n, dim = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if self.fold_heads:
            q, k, v = qkv.reshape(3, b * self.heads, n, -1).unbind(0)
        else:
            q, k, v = qkv.unbind(0)
        if self.rope_sin is not None:  # EVA's order: the prefix tokens as they are, the patches rotated
            npt = self.rope_prefix
            q = torch.cat([q[:, :, :npt], apply_rope(q[:, :, npt:], self.rope_sin, self.rope_cos)], dim=2)
            k = torch.cat([k[:, :, :npt], apply_rope(k[:, :, npt:], self.rope_sin, self.rope_cos)], dim=2)
        ranking = class_attention(q, k, self.scale) if rank else None
        if self.linear:
            x = linear_attend(q, k, v)
        elif self.topk:
            x = topk_attend(q, k, v, self.topk, self.scale)
        else:
            bias = None
            if self.rel_grid:
                bias = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, self.rel_pos_index_h,
                                          self.rel_pos_index_w, self.rel_grid)
            if self.attn_mode == "sdpa" and self.fold_heads:  # 3-D q, k, v: given as 4-D views, since some torch
                # versions send 3-D inputs to the math fallback on the CPU (2.13 does, 2.15 runs the flash kernel)
                mask = None if bias is None else bias[:, None]
                x = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], attn_mask=mask)[:, 0]
            elif self.attn_mode == "sdpa":
                x = F.scaled_dot_product_attention(q, k, v)
            else:
                q = q * self.scale
                attn = q @ k.transpose(-2, -1)
                if bias is not None:
                    attn = attn + bias
                attn = attn.softmax(dim=-1)
                x = attn @ v
        x = x.view(b, self.heads, n, -1).transpose(1, 2).reshape(b, n, dim)
        return (self.proj(x), ranking) if rank else self.proj(x)


def topk_attend(q: Tensor, k: Tensor, v: Tensor, top: int, scale: float) -> Tensor:
    """Top-k attention on [B, h, N, d]: each query attends to the `top` keys of its highest scores.
    scores = (q * scale) @ k^T (N^2 d MACs per head); the top of each row and their int64 indices; softmax
    over them; the selected value rows gathered per query, [B, h, N, top, d]; their weighted sum as a
    batched product [.., 1, top] @ [.., top, d] (N top d MACs per head). The same code on both attention
    paths: no fused kernel selects keys."""
    b, h, n, d = v.shape
    scores = (q * scale) @ k.transpose(-2, -1)
    best, index = scores.topk(top, dim=-1)
    weights = best.softmax(dim=-1)
    rows = torch.gather(v.unsqueeze(2).expand(b, h, n, n, d), 3, index.unsqueeze(-1).expand(b, h, n, top, d))
    return (weights.unsqueeze(-2) @ rows).squeeze(-2)


def class_attention(q: Tensor, k: Tensor, scale: float) -> Tensor:
    """EViT's ranking: softmax((q_cls * scale) @ K^T) over the N keys, [B, h, 1, N] (B*h*N*d MACs), its
    patch columns averaged over the heads: [B, N - 1]."""
    scores = ((q[:, :, :1] * scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    return scores[:, :, 0, 1:].mean(dim=1)


def evit_fuse(x: Tensor, ranking: Tensor, left: int) -> Tensor:
    """EViT (Liang et al. 2022, fused variant) on [B, N, D]: the class token, the left - 2 patch tokens the
    class token attends to most, and the others fused into one token weighted by those attentions:
    [B, left, D]. The temporaries die on return."""
    b, n, d = x.shape
    keep = left - 2
    order = ranking.argsort(dim=1, descending=True)  # [B, N - 1]
    kept, others = order[:, :keep], order[:, keep:]
    patches = x[:, 1:]
    x_kept = torch.gather(patches, 1, kept.unsqueeze(-1).expand(-1, -1, d))
    x_others = torch.gather(patches, 1, others.unsqueeze(-1).expand(-1, -1, d))
    weights = torch.gather(ranking, 1, others)
    fused = torch.sum(x_others * weights.unsqueeze(-1), dim=1, keepdim=True)
    return torch.cat([x[:, :1], x_kept, fused], dim=1)


class QVBiasLinear(nn.Module):
    """EVA's fused qkv projection: a weight [3D, D], biases for q and v and a zero buffer for k, applied in
    one F.linear (3*D*D + 2*D parameters)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(3 * dim, dim))
        nn.init.xavier_uniform_(self.weight)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, torch.cat((self.q_bias, self.k_bias, self.v_bias)))


def rope_tables(head_dim: int, grid: tuple[int, int], temperature: float = 10000.0) -> tuple[Tensor, Tensor]:
    """EVA02's 2-D rotary tables for a gh x gw grid, [gh*gw, head_dim] each: the first half of a head
    rotates with the row index, the second with the column index, at head_dim/4 frequencies each, every
    angle repeated for the interleaved pair it rotates."""
    freqs = temperature ** -(torch.arange(0, head_dim // 4, dtype=torch.float32) / (head_dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float32),
                                torch.arange(grid[1], dtype=torch.float32), indexing="ij")
    angles = torch.cat([rows.reshape(-1, 1) * freqs, cols.reshape(-1, 1) * freqs], dim=1)  # [N, head_dim/2]
    angles = angles.repeat_interleave(2, dim=1)
    return angles.sin(), angles.cos()


def apply_rope(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """x * cos + rot(x) * sin on [..., N, d], rot turning each interleaved pair (a, b) into (-b, a)."""
    rot = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape(x.shape)
    return x * cos + rot * sin


class GluMlp(nn.Module):
    """SwiGLU (Shazeer 2020; timm's GluMlp as EVA02 builds it): fc1 [D -> 2H], SiLU of the first half
    times the second, an optional LayerNorm on the H hidden units (EVA02's scale_mlp), fc2 [H -> D]."""

    def __init__(self, dim: int, hidden: int, norm: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.act = nn.SiLU()
        self.norm = nn.LayerNorm(hidden, eps=LN_EPS) if norm else None
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate, x = self.fc1(x).chunk(2, dim=-1)
        x = self.act(gate) * x
        if self.norm is not None:
            x = self.norm(x)
        return self.fc2(x)


class LayerScale(nn.Module):
    """x * gamma, gamma a learned per-channel vector (timm's LayerScale)."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block (Vaswani et al. 2017; ViT Eq. 2-3) on [B, N, D]; with `window` > 0
    the attention runs inside window x window windows of the `grid` of tokens (no class tokens).
    `sam`: the block runs as timm's SAM block (see the module docstring)."""

    def __init__(self, dim: int, heads: int, hidden: int, attn_mode: str, window: int = 0,
                 grid: tuple[int, int] = (0, 0), rel_pos: bool = False, linear: bool = False,
                 sam: bool = False, spec: ViTSpec | PixelSpec | None = None, prune_to: int = 0) -> None:
        super().__init__()
        self.prune_to = prune_to  # EViT: the tokens left after the attention; 0 = no pruning
        modern = spec is not None  # layer scale, SwiGLU, key bias and RoPE as the spec says
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        rope = (spec.prefix_tokens, grid) if modern and spec.rope else None
        self.attn = Attention(dim, heads, attn_mode, ((window, window) if window else grid) if rel_pos else None,
                              linear, fold_heads=sam, k_bias=not modern or spec.k_bias, rope=rope,
                              topk=spec.topk if modern else 0)
        self.ls1 = LayerScale(dim) if modern and spec.layer_scale else None
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        if modern and spec.mlp == "swiglu":
            self.mlp: nn.Module = GluMlp(dim, hidden, spec.mlp_norm)
        else:
            self.mlp = Mlp(dim, hidden)
        self.ls2 = LayerScale(dim) if modern and spec.layer_scale else None
        self.window, self.grid, self.sam = window, grid, sam
        self.padded = (padded(grid[0], window), padded(grid[1], window)) if window else grid

    def forward(self, x: Tensor) -> Tensor:
        if self.sam:
            return self._sam(x)
        if self.prune_to:
            a, ranking = self.attn(self.norm1(x), rank=True)
            x = evit_fuse(x + (a if self.ls1 is None else self.ls1(a)), ranking, self.prune_to)
            m = self.mlp(self.norm2(x))
            return x + (m if self.ls2 is None else self.ls2(m))
        if self.ls1 is not None:
            x = x + self.ls1(self.attn(self.norm1(x)))
            return x + self.ls2(self.mlp(self.norm2(x)))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def _sam(self, x: Tensor) -> Tensor:
        """timm's SAM Block on the [B, N, D] tokens of the gh x gw grid."""
        b, n, d = x.shape
        (h, w), (hp, wp), m = self.grid, self.padded, self.window
        shortcut = x
        x = self.norm1(x)
        if m:
            x = _window_partition(x.view(b, h, w, d), m, hp, wp)  # [B*nW, m*m, D]
        x = self.attn(x)
        if m:
            x = window_reverse(x, m, m, hp, wp)[:, :h, :w, :].contiguous().view(b, n, d)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


def _window_partition(x: Tensor, window: int, hp: int, wp: int) -> Tensor:
    """timm's SAM window_partition: [B, h, w, D] zero-padded at the bottom/right to [B, hp, wp, D] (a copy
    even when nothing is padded), then windows [B*nW, window^2, D] (a copy unless one window spans the grid)."""
    _, h, w, _ = x.shape
    x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    return window_partition(x, window, window)


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


class TubeletEmbed(nn.Module):
    """ViViT's tubelet embedding of a clip, channels last: [B, C, T, H, W] -> [B, T/t, H/P, W/P, dim], a
    Conv3d of kernel and stride t x P x P (B*T/t*H/P*W/P*dim*C*t*P^2 MACs)."""

    def __init__(self, in_chans: int, dim: int, tubelet: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, (tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)


class VisionTransformer(nn.Module):
    """[B, C, H, W] (or a clip [B, C, T, H, W], embedded by tubelets) -> ViT: [B, num_classes] logits of the
    first class token (mean of the tokens when the spec has none); pixel model: [B, H*W, vocab] palette
    logits, pixels in raster order. Without a head (num_classes = 0) the features: the neck's [B, C_n, gh, gw]
    map, or the normed tokens [B, N, D]."""

    def __init__(self, spec: ViTSpec | PixelSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        super().__init__()
        self.spec, self.res = spec, res
        d, p = spec.dim, spec.patch
        frames = getattr(res, "frames", None)
        if frames is None:
            self.patch_embed = ConvEmbed(spec.in_chans, d, kernel=p, stride=p)
        else:  # a clip: tubelets of tubelet x P x P
            self.patch_embed = TubeletEmbed(spec.in_chans, d, spec.tubelet, p)
        patches = (frames or 1) // getattr(spec, "tubelet", 1) * (res[0] // p) * (res[1] // p)
        self.cls_token = trunc_normal(1, 1 if spec.distilled else spec.class_tokens, d) if spec.class_tokens else None
        self.dist_token = trunc_normal(1, 1, d) if spec.distilled else None
        self.reg_token = trunc_normal(1, spec.reg_tokens, d) if spec.reg_tokens else None
        rows = patches if spec.reg_tokens else patches + spec.class_tokens  # timm's no_embed_class with registers
        self.pos_embed = trunc_normal(1, rows, d) if spec.pos_embed else None
        self.grid = grid = (res[0] // p, res[1] // p)
        self.sam = bool(spec.window or spec.rel_pos or spec.neck)  # timm's windowed ViT is the SAM encoder
        blocks, n = [], patches + spec.prefix_tokens
        for i in range(spec.depth):
            left = spec.tokens_after(i, n) if spec.prune_blocks else n
            blocks.append(Block(d, spec.heads, spec.mlp_hidden, attn_mode, spec.block_window(i), grid, spec.rel_pos,
                                spec.attention == "linear", self.sam, spec, prune_to=left if left != n else 0))
            n = left
        self.blocks = nn.Sequential(*blocks)
        self.per_token_head = isinstance(spec, PixelSpec)
        self.fc_norm = nn.LayerNorm(d, eps=LN_EPS) if spec.fc_norm else None
        self.norm = None if spec.neck or self.fc_norm is not None else nn.LayerNorm(d, eps=LN_EPS)
        self.neck = sam_neck(d, spec.neck) if spec.neck else None
        classes = spec.vocab if self.per_token_head else spec.num_classes
        self.head = nn.Linear(spec.neck or d, classes) if classes else None
        self.head_dist = nn.Linear(d, classes) if spec.distilled else None

    def _pos_embed(self, x: Tensor) -> Tensor:
        """Class tokens prepended (a concat), then + pos_embed: [B, gh*gw, D] -> [B, N, D]. With register
        tokens (timm's no_embed_class): + pos_embed on the patches, then the class and register tokens."""
        tokens = [] if self.cls_token is None else [self.cls_token] if self.dist_token is None else \
            [self.cls_token, self.dist_token]
        if self.reg_token is not None:
            if self.pos_embed is not None:
                x = x + self.pos_embed
            return torch.cat([*(t.expand(x.shape[0], -1, -1) for t in [*tokens, self.reg_token]), x], dim=1)
        if tokens:
            x = torch.cat([*(t.expand(x.shape[0], -1, -1) for t in tokens), x], dim=1)
        return x if self.pos_embed is None else x + self.pos_embed

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.patch_embed(x).flatten(1, -2)  # [B, (T')*gh*gw, D], a view of the conv output
        x = self._pos_embed(x)
        x = self.blocks(x)
        if self.neck is not None:  # [B, N, D] -> [B, D, gh, gw] -> [B, C_n, gh, gw]
            x = self.neck(x.view(x.shape[0], *self.grid, -1).permute(0, 3, 1, 2))
            return x if self.head is None else self.head(x.mean(dim=(2, 3)))
        if self.fc_norm is not None:  # pool, norm the pooled token, then the head if there is one
            x = self.fc_norm(self._pool(x))
            return x if self.head is None else self.head(x)
        x = self.norm(x)
        if self.head is None:
            return x
        if self.per_token_head:
            return self.head(x)
        if self.head_dist is not None:  # DeiT: the class and distillation heads, averaged
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(self._pool(x))

    def _pool(self, x: Tensor) -> Tensor:
        """Class token 0, or the mean of the patch tokens (the prefix tokens left out)."""
        if self.spec.pool == "token":
            return x[:, 0]
        npt = self.spec.prefix_tokens
        return (x[:, npt:] if npt else x).mean(dim=1)
