"""MLP-Mixer (Tolstikhin et al. 2021) as torch modules.

Tree: stem.proj (P x P stride-P conv) -> blocks.i -> norm -> mean over tokens -> head. A block on
[B, N, C] tokens (Mixer Eq. 1):
    x = x + (mlp_tokens(norm1(x)^T))^T     token mixing: an MLP N -> D_S -> N on [B, C, N]
    x = x + mlp_channels(norm2(x))         channel mixing: an MLP C -> D_C -> C on [B, N, C]
The token-mixing MLP has one input per token, so it is built for the resolution's N.

The forward keeps timm's tensors alive (`timm/models/mlp_mixer.py`): the stem's [B, N, C] tokens are a
view of the conv output (no copy), and `blocks` is an nn.Sequential, whose caller keeps that first
input referenced until the last block returns.
"""

from __future__ import annotations

from torch import Tensor, nn

from vitcost.nets.common import ConvEmbed, Mlp, check_input
from vitcost.specs import MixerSpec

LN_EPS = 1e-6


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, tokens_hidden: int, channels_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp_tokens = Mlp(tokens, tokens_hidden)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp_channels = Mlp(dim, channels_hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class MlpMixer(nn.Module):
    """[B, C, H, W] -> [B, num_classes]."""

    def __init__(self, spec: MixerSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        """`attn_mode` is accepted for a uniform builder signature; Mixer has no attention."""
        super().__init__()
        self.spec, self.res = spec, res
        self.stem = ConvEmbed(spec.in_chans, spec.dim, spec.patch, spec.patch)
        n = (res[0] // spec.patch) * (res[1] // spec.patch)
        self.blocks = nn.Sequential(*(MixerBlock(n, spec.dim, spec.tokens_hidden, spec.channels_hidden)
                                      for _ in range(spec.depth)))
        self.norm = nn.LayerNorm(spec.dim, eps=LN_EPS)
        self.head = nn.Linear(spec.dim, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.stem(x).flatten(1, 2)  # [B, N, C], a view of the conv output [B, C, gh, gw]
        x = self.blocks(x)
        x = self.norm(x)
        return self.head(x.mean(dim=1))
