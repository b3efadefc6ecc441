"""Frozen architecture specs: one per family, validated on construction.

A spec describes an architecture independent of the input size; the resolution is an argument of
the analytic walker and of the torch builder. Both walk the same spec, so their layer paths match.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from vitcost.errors import SpecError


def _positive(spec: object, **values: int | float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise SpecError(f"{type(spec).__name__}.{name} must be a positive number, got {value!r}.")


def _divides(spec: object, dim_name: str, dim: int, heads: int) -> None:
    if dim % heads:
        raise SpecError(f"{type(spec).__name__}: {dim_name}={dim} is not divisible by heads={heads}.")


@dataclass(frozen=True)
class ViTSpec:
    """ViT (Dosovitskiy et al. 2021): conv patch embedding of stride `patch`, class token(s), learned
    position embedding, `depth` pre-norm blocks of global MSA + MLP, final norm, linear head on the
    class token. The position embedding has one row per token, so its size follows the resolution."""

    family: ClassVar[str] = "vit"
    dim: int
    depth: int
    heads: int
    patch: int = 16
    mlp_ratio: float = 4.0
    class_tokens: int = 1
    num_classes: int = 1000
    in_chans: int = 3

    def __post_init__(self) -> None:
        _positive(self, dim=self.dim, depth=self.depth, heads=self.heads, patch=self.patch,
                  mlp_ratio=self.mlp_ratio, num_classes=self.num_classes, in_chans=self.in_chans)
        if self.class_tokens < 0:
            raise SpecError("ViTSpec.class_tokens must be 0 or more.")
        _divides(self, "dim", self.dim, self.heads)

    @property
    def mlp_hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)


@dataclass(frozen=True)
class PixelSpec:
    """Pixel-level attention (Image GPT, Chen et al. 2020): every pixel is a token. Each pixel is
    embedded by a 1x1 convolution of its colour channels, a learned position embedding is added,
    then `depth` pre-norm blocks of global MSA + MLP, a final norm and a per-pixel head over a
    `vocab`-entry colour palette (iGPT predicts each pixel's palette entry).

    Difference from iGPT: iGPT looks pixels up in a 512-entry palette embedding (512*d params)
    where this embeds raw colours with a 1x1 conv (4*d params); iGPT also applies a causal mask,
    which changes no multiply-accumulate."""

    family: ClassVar[str] = "pixel"
    dim: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    vocab: int = 512
    in_chans: int = 3
    patch: ClassVar[int] = 1
    class_tokens: ClassVar[int] = 0

    def __post_init__(self) -> None:
        _positive(self, dim=self.dim, depth=self.depth, heads=self.heads, mlp_ratio=self.mlp_ratio,
                  vocab=self.vocab, in_chans=self.in_chans)
        _divides(self, "dim", self.dim, self.heads)

    @property
    def mlp_hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)


@dataclass(frozen=True)
class SwinSpec:
    """Swin Transformer (Liu et al. 2021): 4x4 conv patch embedding + norm, four stages of
    alternating W-MSA / SW-MSA blocks (cyclic shift by window//2 with an attention mask), relative
    position bias, patch merging (2x2 concat, norm, linear 4C -> 2C) between stages, final norm,
    global average pool and head. Channels double and heads double at every stage."""

    family: ClassVar[str] = "swin"
    embed_dim: int
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    window: int = 7
    patch: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    in_chans: int = 3

    def __post_init__(self) -> None:
        _positive(self, embed_dim=self.embed_dim, window=self.window, patch=self.patch,
                  mlp_ratio=self.mlp_ratio, num_classes=self.num_classes, in_chans=self.in_chans)
        if len(self.depths) != len(self.heads) or not self.depths:
            raise SpecError("SwinSpec: depths and heads must be non-empty and of equal length.")
        for i, (d, h) in enumerate(zip(self.depths, self.heads)):
            _positive(self, depth=d, heads=h)
            _divides(self, f"stage {i} dim", self.stage_dim(i), h)

    def stage_dim(self, stage: int) -> int:
        return self.embed_dim * 2**stage


@dataclass(frozen=True)
class MViTSpec:
    """MViTv2 (Li et al. 2022), image variant with conv pooling: a 7x7 stride-4 conv stem, then
    stages of multiscale blocks. Every block pools Q, K and V with a depthwise k x k conv (shared
    across heads) followed by LayerNorm; the first block of each later stage pools Q with stride 2,
    halving the grid; K/V are pooled with a stride that starts at `kv_stride` and is divided by the
    Q stride at each stage start (4, 2, 1, 1). Attention adds decomposed relative positions and the
    pooled Q back to its output (residual pooling). Channels change in the first block of a stage
    through the attention's projections ("expand_attn"), the residual is projected by a linear layer
    and max-pooled. A final norm, mean pool over tokens and a linear head close the model."""

    family: ClassVar[str] = "mvit"
    dims: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    pool_kernel: int = 3
    kv_stride: int = 4
    stage_q_stride: int = 2
    stem_kernel: int = 7
    stem_stride: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    in_chans: int = 3
    residual_pooling: bool = True
    rel_pos: bool = True

    def __post_init__(self) -> None:
        _positive(self, pool_kernel=self.pool_kernel, kv_stride=self.kv_stride,
                  stage_q_stride=self.stage_q_stride, stem_kernel=self.stem_kernel,
                  stem_stride=self.stem_stride, mlp_ratio=self.mlp_ratio,
                  num_classes=self.num_classes, in_chans=self.in_chans)
        if not (len(self.dims) == len(self.depths) == len(self.heads)) or not self.dims:
            raise SpecError("MViTSpec: dims, depths and heads must be non-empty and of equal length.")
        for d, n, h in zip(self.dims, self.depths, self.heads):
            _positive(self, dim=d, depth=n, heads=h)
            _divides(self, "dim", d, h)
        # The max-pooled shortcut (kernel s+1, stride s) and the conv-pooled queries (kernel k, stride s)
        # give the same grid only for an odd kernel and a stride of 1 or an even stride.
        if self.pool_kernel % 2 == 0:
            raise SpecError(f"MViTSpec.pool_kernel must be odd, got {self.pool_kernel}.")
        if self.stage_q_stride > 1 and self.stage_q_stride % 2:
            raise SpecError(f"MViTSpec.stage_q_stride must be 1 or even, got {self.stage_q_stride}.")

    def q_stride(self, stage: int) -> int:
        return 1 if stage == 0 else self.stage_q_stride

    def kv_stride_at(self, stage: int) -> int:
        """Adaptive K/V stride: divided by the Q stride at each stage start, never below 1."""
        s = self.kv_stride
        for i in range(1, stage + 1):
            s = max(s // self.q_stride(i), 1)
        return s


@dataclass(frozen=True)
class MixerSpec:
    """MLP-Mixer (Tolstikhin et al. 2021): conv patch embedding, `depth` blocks of a token-mixing MLP
    (N -> tokens_hidden -> N, shared across channels) and a channel-mixing MLP (C -> channels_hidden
    -> C), each pre-norm with a residual, then final norm, mean pool and head. The token-mixing MLP
    has N*tokens_hidden weights, so parameters grow with the resolution."""

    family: ClassVar[str] = "mixer"
    dim: int
    depth: int
    tokens_hidden: int
    channels_hidden: int
    patch: int = 16
    num_classes: int = 1000
    in_chans: int = 3

    def __post_init__(self) -> None:
        _positive(self, dim=self.dim, depth=self.depth, tokens_hidden=self.tokens_hidden,
                  channels_hidden=self.channels_hidden, patch=self.patch,
                  num_classes=self.num_classes, in_chans=self.in_chans)


Spec = ViTSpec | PixelSpec | SwinSpec | MViTSpec | MixerSpec
FAMILIES: dict[str, str] = {
    "pixel": "pixel-level attention",
    "vit": "ViT patch attention",
    "swin": "Swin window attention",
    "mvit": "MViTv2 pooling attention",
    "mixer": "MLP-Mixer",
}


def with_overrides(spec: Spec, *, patch: int | None = None, window: int | None = None) -> Spec:
    """Return `spec` with a different patch size or window, or raise SpecError if it has none."""
    changes: dict[str, int] = {}
    if patch is not None:
        if not hasattr(spec, "patch") or isinstance(spec, PixelSpec):
            raise SpecError(f"--patch does not apply to the {spec.family} family.")
        changes["patch"] = patch
    if window is not None:
        if not isinstance(spec, SwinSpec):
            raise SpecError(f"--window applies only to Swin models, not to the {spec.family} family.")
        changes["window"] = window
    return replace(spec, **changes) if changes else spec


__all__ = ["ViTSpec", "PixelSpec", "SwinSpec", "MViTSpec", "MixerSpec", "Spec", "FAMILIES",
           "with_overrides"]
