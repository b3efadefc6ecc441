"""ConvNeXt (Liu et al. 2022) as torch modules, channels first ([B, C, H, W]) between blocks.

Tree (timm's module names): stem.{0: conv P x P stride P, 1: LayerNorm2d} -> stages.s (downsample.{0:
LayerNorm2d, 1: conv 2x2 stride 2} in stages 1.., then blocks.i) -> head (global average pool, norm, fc).
A block follows timm's ConvNeXtBlock with its default linear MLP (conv_mlp=False):
    shortcut = x
    x = conv_dw(x).permute(0, 2, 3, 1)      k x k depthwise conv, then channels last [B, H, W, C]
    x = norm(x); x = mlp(x)                 LayerNorm, fc1 C -> 4C, GELU, fc2 4C -> C
    x = x.permute(0, 3, 1, 2) * gamma       per-channel layer scale
    return x + shortcut
`stages` and each stage's `blocks` are nn.Sequential, as in timm: their callers keep the stem output,
the stage input and the downsampled grid referenced until the last block of the stage (or of the
model) returns (the memory model's `outer`). There is no attention: `attn_mode` is accepted for the
uniform builder signature and ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcost.analytic.convnext import DOWNSAMPLE
from vitcost.nets.common import Mlp, check_input
from vitcost.specs import ConvNeXtSpec

LN_EPS = 1e-6
LAYER_SCALE_INIT = 1e-6  # the paper's initial gamma


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of [B, C, H, W]: a channels-last view normalised by F.layer_norm and
    viewed back (fvcore and FlopCounterMode see one layer_norm of B*H*W rows of C)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """[B, C, H, W] -> same: depthwise conv, LayerNorm, MLP, layer scale, residual."""

    def __init__(self, dim: int, hidden: int, kernel: int, layer_scale: bool) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden)
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT)) if layer_scale else None

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.conv_dw(x).permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.mlp(x).permute(0, 3, 1, 2)
        if self.gamma is not None:
            x = x * self.gamma[:, None, None]
        return x + shortcut


class ConvNeXtStage(nn.Module):
    """Optional downsampling (LayerNorm2d, then a 2x2 stride-2 conv to the stage's channels), then blocks."""

    def __init__(self, cin: int, dim: int, depth: int, hidden: int, kernel: int, layer_scale: bool,
                 downsample: bool) -> None:
        super().__init__()
        self.downsample = (nn.Sequential(LayerNorm2d(cin), nn.Conv2d(cin, dim, DOWNSAMPLE, stride=DOWNSAMPLE))
                           if downsample else None)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim, hidden, kernel, layer_scale) for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        x = self.blocks(x)
        return x


class ConvNeXtHead(nn.Module):
    """Global average pool, LayerNorm over the pooled channels, linear classifier: [B, C, h, w] -> [B, classes]."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.norm(x.mean(dim=(2, 3))))


class ConvNeXt(nn.Module):
    """[B, C, H, W] -> [B, num_classes]. Stage s works on a floor(H/P)/2^s grid (rounded down at each
    downsampling) of dims[s] channels."""

    def __init__(self, spec: ConvNeXtSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        """`attn_mode` is accepted for a uniform builder signature; ConvNeXt has no attention."""
        super().__init__()
        self.spec, self.res = spec, res
        c0 = spec.dims[0]
        self.stem = nn.Sequential(nn.Conv2d(spec.in_chans, c0, spec.patch, stride=spec.patch), LayerNorm2d(c0))
        stages = []
        cin = c0
        for s, (dim, depth) in enumerate(zip(spec.dims, spec.depths)):
            stages.append(ConvNeXtStage(cin, dim, depth, int(dim * spec.mlp_ratio), spec.kernel, spec.layer_scale,
                                        downsample=s > 0))
            cin = dim
        self.stages = nn.Sequential(*stages)
        self.head = ConvNeXtHead(cin, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.stem(x)
        x = self.stages(x)
        return self.head(x)
