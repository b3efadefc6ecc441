"""MLP-Mixer walker (Tolstikhin et al. 2021).

Per block with N patch tokens of width C, token-mixing width D_S and channel-mixing width D_C:
    token mixing   (on x^T, shared across channels): C*N*D_S + C*D_S*N MACs, 2*N*D_S + N + D_S params
    channel mixing: N*C*D_C + N*D_C*C MACs
so a block costs 2*N*C*(D_S + D_C) MACs: linear in N, unlike attention.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.trace import Trace
from vitcost.specs import MixerSpec


def mixer_trace(spec: MixerSpec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    c = spec.dim
    gh, gw = t.conv("stem.proj", b, spec.in_chans, c, h, w, kernel=spec.patch, stride=spec.patch, pad=0,
                    role="embed")
    n = gh * gw
    x = b * n * c
    for i in range(spec.depth):
        p = f"blocks.{i}"
        with t.block(p, "", x):
            t.norm(f"{p}.norm1", b * n, c)
            t.linear(f"{p}.mlp_tokens.fc1", b * c, n, spec.tokens_hidden, role="mlp")
            t.note("transposed_input", temp=b * n * c)  # the contiguous copy torch.matmul makes of norm1(x)^T
            t.gelu(f"{p}.mlp_tokens.act", b * c * spec.tokens_hidden)
            t.linear(f"{p}.mlp_tokens.fc2", b * c, spec.tokens_hidden, n, role="mlp")
            t.eltwise(p, x)  # residual
            t.norm(f"{p}.norm2", b * n, c)
            t.linear(f"{p}.mlp_channels.fc1", b * n, c, spec.channels_hidden, role="mlp")
            t.gelu(f"{p}.mlp_channels.act", b * n * spec.channels_hidden)
            t.linear(f"{p}.mlp_channels.fc2", b * n, spec.channels_hidden, c, role="mlp")
            t.eltwise(p, x)  # residual
    t.norm("norm", b * n, c)
    t.eltwise("", b * c, kind="pool", inp=x)  # mean over tokens
    t.linear("head", b, c, spec.num_classes, role="head")
    return t


def grid(spec: MixerSpec, h: Any, w: Any) -> tuple[Any, Any]:
    return h // spec.patch, w // spec.patch


def lattice(spec: MixerSpec) -> tuple[int, int]:
    return spec.patch, spec.patch


def complexity(spec: MixerSpec) -> str:
    return "O(R^2/P^2)"  # token-mixing MLP: linear in the tokens


trace = mixer_trace  # the registry reads every family module's `trace`
