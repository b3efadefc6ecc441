"""ConvNeXt walker (Liu et al. 2022) and the memory of its blocks.

A block on an h x w grid of C channels with a k x k depthwise conv and MLP width r*C (ConvNeXt Fig. 4):
    conv_dw   hw * C * k^2 MACs        (each output channel reads one input channel: Cin/groups = 1)
    norm      LayerNorm of hw rows of C (channels last)
    mlp       hw * C * rC + hw * rC * C = 2r * hw * C^2 MACs, GELU on hw * rC
    gamma     per-channel layer scale, then the residual add
so a block costs hw*C*(k^2 + 2rC) MACs: a convolution's O(HW * Cin * Cout * K^2) with the channel
mixing split off the spatial mixing. The stem is a P x P stride-P conv (+ LayerNorm over channels),
each later stage starts with a LayerNorm + 2x2 stride-2 conv (odd grids drop their last row/column),
and the head pools, normalises and classifies.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import floor_div
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import ConvNeXtSpec

DOWNSAMPLE = 2  # kernel and stride of the conv between stages


def convnext_block(t: Trace, p: str, b: Any, gh: Any, gw: Any, c: int, spec: ConvNeXtSpec) -> None:
    """One block on [b, c, gh, gw], path prefix `p` (module names as in timm's ConvNeXtBlock)."""
    rows, x = b * gh * gw, b * gh * gw * c
    hidden = int(c * spec.mlp_ratio)
    k = spec.kernel
    t.conv(f"{p}.conv_dw", b, c, c, gh, gw, kernel=k, stride=1, pad=k // 2, groups=c, role="mlp")
    t.note(scratch=("conv", "depthwise", 1, b, True))  # reads the channels-last view LayerNorm2d leaves
    t.norm(f"{p}.norm", rows, c)
    t.linear(f"{p}.mlp.fc1", rows, c, hidden, role="mlp")
    t.gelu(f"{p}.mlp.act", rows * hidden)
    t.linear(f"{p}.mlp.fc2", rows, hidden, c, role="mlp")
    if spec.layer_scale:
        t.param(f"{p}.gamma", c, role="mlp")
        t.eltwise(p, x, kind="scale", inp=x)  # x * gamma
    t.eltwise(p, x)  # residual


def min_size(spec: ConvNeXtSpec) -> int:
    """The smallest input side that leaves every stage at least one pixel."""
    return spec.patch * DOWNSAMPLE ** (len(spec.dims) - 1)


def convnext_trace(spec: ConvNeXtSpec, h: Any, w: Any, b: Any) -> Trace:
    if isinstance(h, int) and isinstance(w, int) and min(h, w) < min_size(spec):
        m = min_size(spec)
        raise SpecError(f"a {h}x{w} input leaves a ConvNeXt stage without pixels (stem stride {spec.patch}, "
                        f"{len(spec.dims) - 1} stride-2 downsamplings): use at least {m}x{m}.")
    t = Trace(b)
    c = spec.dims[0]
    gh, gw = t.conv("stem.0", b, spec.in_chans, c, h, w, kernel=spec.patch, stride=spec.patch, pad=0, role="embed")
    t.norm("stem.1", b * gh * gw, c)
    t.note(scratch=("copy", b * gh * gw * c))  # LayerNorm2d reads the conv output's permuted view through a copy
    for s, (dim, depth) in enumerate(zip(spec.dims, spec.depths)):
        if s:
            t.norm(f"stages.{s}.downsample.0", b * gh * gw, c, role="pool")
            gh, gw = t.conv(f"stages.{s}.downsample.1", b, c, dim, gh, gw, kernel=DOWNSAMPLE, stride=DOWNSAMPLE,
                            pad=0, role="pool")
            t.note(scratch=("conv", "conv", DOWNSAMPLE, b, True))
            c = dim
        for i in range(depth):
            with t.block(f"stages.{s}.blocks.{i}", f"stages.{s}", b * gh * gw * c):
                convnext_block(t, f"stages.{s}.blocks.{i}", b, gh, gw, c, spec)
    t.eltwise("head", b * c, kind="pool", inp=b * gh * gw * c)  # global average pool
    t.norm("head.norm", b, c, role="head")
    t.linear("head.fc", b, c, spec.num_classes, role="head")
    return t


def grid(spec: ConvNeXtSpec, h: Any, w: Any) -> tuple[Any, Any]:
    """The first stage's grid: one pixel per stem patch."""
    return floor_div(h, spec.patch), floor_div(w, spec.patch)


def lattice(spec: ConvNeXtSpec) -> tuple[int, int]:
    """On multiples of patch * 2^(stages-1) no stage drops a row; the stem stride is the granularity."""
    return min_size(spec), spec.patch


def complexity(spec: ConvNeXtSpec) -> str:
    return "O(HW·Cin·Cout·K²)"  # a convolution: every output pixel reads a fixed K x K window


trace = convnext_trace  # the registry reads every family module's `trace`
