"""Pieces shared by the reference models: the attention core, the two-layer MLP and the conv embedding.

The attention core is a function called from inside each family's attention module, so that its
multiply-accumulates (q @ k^T and scores @ v) are attributed to that module's own dotted path, which
is where the analytic walkers put them (`blocks.3.attn`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcost.analytic.ints import ceil_div
from vitcost.errors import VitcostError
from vitcost.vocab import Kernel

# "math": explicit q @ k^T, additive terms, softmax, @ v (the score matrix is materialised);
# "sdpa": torch's fused F.scaled_dot_product_attention with the additive terms as attn_mask.
ATTN_MODES: tuple[str, ...] = tuple(dict.fromkeys(k.net_mode for k in Kernel))


def check_attn_mode(mode: str) -> str:
    if mode not in ATTN_MODES:
        raise VitcostError(f"unknown attention mode {mode!r}; choose from {', '.join(ATTN_MODES)}.")
    return mode


def attend(q: Tensor, k: Tensor, v: Tensor, mode: str, terms: Sequence[Tensor] = ()) -> Tensor:
    """Scaled dot-product attention over the last two dims (Vaswani et al. 2017).

    q: [..., Nq, d], k and v: [..., Nk, d]; every term broadcasts to the scores [..., Nq, Nk].
    math:  scores = (q * d**-0.5) @ k^T        [..., Nq, d] @ [..., d, Nk] -> [..., Nq, Nk]
           scores = scores + term, for each term (relative position bias, shift mask, rel-pos)
           out = softmax(scores) @ v           [..., Nq, Nk] @ [..., Nk, d] -> [..., Nq, d]
    sdpa:  F.scaled_dot_product_attention(q, k, v, attn_mask=sum(terms)), the same function fused;
           the terms are summed among themselves first (they are smaller than the scores when they
           broadcast, e.g. a per-window mask shared by the batch).
    """
    if mode == "sdpa":
        mask = None
        for term in terms:
            mask = term if mask is None else mask + term
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    for term in terms:
        scores = scores + term
    return scores.softmax(dim=-1) @ v


class AttentionCore(nn.Module):
    """Base of every attention module: holds the attention mode that `set_attn_mode` switches."""

    def __init__(self, attn_mode: str) -> None:
        super().__init__()
        self.attn_mode = check_attn_mode(attn_mode)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, terms: Sequence[Tensor] = ()) -> Tensor:
        return attend(q, k, v, self.attn_mode, terms)

    def extra_repr(self) -> str:
        return f"attn_mode={self.attn_mode!r}"


def set_attn_mode(model: nn.Module, mode: str) -> nn.Module:
    """Switch every attention module of `model` to `mode` (one of ATTN_MODES); returns the model."""
    check_attn_mode(mode)
    for module in model.modules():
        if isinstance(module, AttentionCore):
            module.attn_mode = mode
    return model


class Mlp(nn.Module):
    """fc2(GELU(fc1(x))) over the last dim: [..., dim] -> [..., hidden] -> [..., out] (default dim);
    2 * dim * hidden MACs per row. Used for the channel MLP of every family and for Mixer's token MLP."""

    def __init__(self, dim: int, hidden: int, out: int = 0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvEmbed(nn.Module):
    """Conv embedding of an image, channels last: [B, C_in, H, W] -> [B, gh, gw, dim] with
    gh = floor((H + 2*pad - kernel) / stride) + 1, then an optional LayerNorm (Swin's patch_embed.norm).
    The conv runs B*gh*gw*dim*C_in*kernel^2 MACs."""

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int, padding: int = 0,
                 norm: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).permute(0, 2, 3, 1)
        return x if self.norm is None else self.norm(x)


def check_input(x: Tensor, res: tuple[int, int], in_chans: int) -> None:
    """Raise unless x is [B, in_chans, H, W] at the resolution the model was built for ([B, in_chans, T, H, W]
    for a clip: `res` a `vocab.Res` with frames)."""
    t = getattr(res, "frames", None)
    want = (*(() if t is None else (t,)), *res)
    if x.dim() != 2 + len(want) or x.shape[1] != in_chans or tuple(x.shape[2:]) != want:
        raise VitcostError(f"this model was built for [B, {in_chans}, {', '.join(map(str, want))}] inputs, "
                           f"got {list(x.shape)}; build it again for the new resolution.")


def trunc_normal(*shape: int, std: float = 0.02) -> nn.Parameter:
    """A parameter drawn from a normal truncated at 2 std (the ViT/Swin/MViTv2 initialisation of
    position embeddings, class tokens and relative-position tables)."""
    return nn.Parameter(nn.init.trunc_normal_(torch.empty(*shape), std=std, a=-2 * std, b=2 * std))


def hierarchical_stages(spec: Any, res: tuple[int, int]) -> Iterator[tuple[int, int, int, tuple[int, int], int]]:
    """(stage, depth, heads, token grid, width) of each stage of a Swin-like hierarchy: patches of
    `spec.patch` px, then the grid halved (rounded up) at every later stage's patch merging."""
    gh, gw = res[0] // spec.patch, res[1] // spec.patch
    for s, (depth, heads) in enumerate(zip(spec.depths, spec.heads)):
        if s:
            gh, gw = ceil_div(gh, 2), ceil_div(gw, 2)
        yield s, depth, heads, (gh, gw), spec.stage_dim(s)


def window_partition(x: Tensor, wh: int, ww: int) -> Tensor:
    """[B, H, W, C] -> [B * (H/wh) * (W/ww), wh*ww, C]; windows in row-major order, batch outermost.
    H and W must be multiples of wh and ww."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def window_reverse(windows: Tensor, wh: int, ww: int, h: int, w: int) -> Tensor:
    """Inverse of window_partition: [B * (H/wh) * (W/ww), wh*ww, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)
