"""ResNet walker (He et al. 2016; bottleneck blocks, "v1.5" with the stride on the 3x3 conv) and the
memory of its blocks.

A convolution of Cin -> Cout channels with a K x K kernel on an output grid of Ho x Wo costs
Ho*Wo * Cin*Cout * K^2 MACs. A bottleneck of width P (output 4P) on an input grid h x w, stride s,
output grid ho x wo = ceil(h/s) x ceil(w/s) (He et al. Fig. 5, right):
    conv1 1x1  h*w  * Cin*P          conv2 3x3  ho*wo * P*P*9          conv3 1x1  ho*wo * P*4P
    downsample (first block of a stage) 1x1 stride s: ho*wo * Cin*4P
each conv followed by an eval-mode BatchNorm (a per-channel scale and shift) and, except after conv3,
an in-place ReLU; the shortcut is added to conv3's normalised output, then ReLU. The stem is a 7x7
stride-2 conv (padding 3), BatchNorm, ReLU and a 3x3 stride-2 max pool (padding 1): an h x w input
reaches the first stage at ceil(ceil(h/2)/2) per side.

A non-local block (Wang et al. 2018; see `ResNetSpec`) after a bottleneck with output [b, C, h, w],
N = h*w positions, C' = C / nl_reduction, M keys (N, or floor(h/2)*floor(w/2) with subsampling):
    theta, phi, g  1x1 convs with bias     3 * b*N * C*C' MACs, 3 * (C*C' + C') params
    pool_phi/g     2x2 stride-2 max pool   4 taps per output element (with nl_subsample)
    attention      one head of width C'    2 * b*N*M*C' MACs, b*N*M scores (the O((HW)^2) term)
    w              1x1 conv, no bias       b*N * C'*C MACs, C'*C params; then BatchNorm (2C params)
    residual       x + z                   b*C*N adds
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import conv_out
from vitcost.analytic.trace import Trace
from vitcost.errors import SpecError
from vitcost.specs import ResNetSpec

STEM_KERNEL, STEM_STRIDE, STEM_PAD = 7, 2, 3
POOL_KERNEL, POOL_STRIDE, POOL_PAD = 3, 2, 1


def conv_bn(t: Trace, p: str, conv: str, bn: str, b: Any, cin: int, cout: int, h: Any, w: Any, *, kernel: int,
            stride: int, pad: int, role: str = "mlp", src: tuple[str, ...] = (), scratch: tuple = (),
            keep: str = "") -> tuple[Any, Any]:
    """A bias-free conv and the BatchNorm after it; returns the output grid. `src`: the conv's producer,
    when it does not read the previous op's output; `scratch`: the conv's (`cost.Mem`); `keep`: the module
    until whose return the BatchNorm's output stays referenced."""
    ho, wo = t.conv(f"{p}{conv}", b, cin, cout, h, w, kernel=kernel, stride=stride, pad=pad, bias=False, role=role)
    t.note(src=src, scratch=scratch)
    t.batch_norm(f"{p}{bn}", b * cout * ho * wo, cout)
    t.note(keep=keep)
    return ho, wo


def relu(t: Trace, path: str, elems: Any) -> None:
    t.eltwise(path, elems, kind="relu", inp=elems)
    t.note(inplace=True)  # nn.ReLU(inplace=True)


def bottleneck(t: Trace, p: str, b: Any, h: Any, w: Any, cin: int, width: int, cout: int, stride: int
               ) -> tuple[Any, Any]:
    """One bottleneck on [b, cin, h, w] -> [b, cout, ho, wo], path prefix `p` (timm's/torchvision's names)."""
    block_input = t.key()
    h1, w1 = conv_bn(t, p, ".conv1", ".bn1", b, cin, width, h, w, kernel=1, stride=1, pad=0,
                     scratch=("conv", "pointwise", 1, b, False))
    relu(t, f"{p}.act1", b * width * h1 * w1)
    h2, w2 = conv_bn(t, p, ".conv2", ".bn2", b, width, width, h1, w1, kernel=3, stride=stride, pad=1,
                     scratch=("conv", "conv", stride, b, False))
    relu(t, f"{p}.act2", b * width * h2 * w2)
    conv_bn(t, p, ".conv3", ".bn3", b, width, cout, h2, w2, kernel=1, stride=1, pad=0,
            scratch=("conv", "pointwise", 1, b, False))
    bn3 = t.key()
    if stride != 1 or cin != cout:  # projection shortcut: reads the block input; `shortcut`, a local to the end
        conv_bn(t, p, ".downsample.0", ".downsample.1", b, cin, cout, h, w, kernel=1, stride=stride, pad=0,
                src=(block_input,), scratch=("conv", "pointwise", stride, b, False), keep=p)
    out = b * cout * h2 * w2
    t.eltwise(p, out)  # x += shortcut
    t.note("branch_copied", inplace=True, reads=(bn3,))  # in place on bn3's output, the shortcut run in between
    relu(t, f"{p}.act3", out)
    return h2, w2


def max_pool2(t: Trace, path: str, b: Any, c: int, h: Any, w: Any) -> tuple[Any, Any]:
    """A 2x2 stride-2 max pool of [b, c, h, w] (no padding: floor(h/2) x floor(w/2)), 4 taps per output."""
    ho, wo = conv_out(h, 2, 2, 0), conv_out(w, 2, 2, 0)
    t.eltwise(path, b * c * ho * wo * 4, kind="pool", role="pool", inp=b * c * h * w, out=b * c * ho * wo)
    t.note("max_pool")
    return ho, wo


def non_local(t: Trace, p: str, b: Any, h: Any, w: Any, c: int, spec: ResNetSpec) -> None:
    """The non-local block `p` on the bottleneck output [b, c, h, w] before it (module docstring)."""
    ck = c // spec.nl_reduction
    x = t.key()
    # q, k and v are locals to the end: views of theta's output and of phi's and g's (or of their pools), or
    # for sdpa token-major copies of them (the source dies once copied)
    t.conv(f"{p}.theta", b, c, ck, h, w, kernel=1, stride=1, pad=0, role="proj")
    t.note(keep=p, fused_temp=b * ck * h * w)
    sources = [f"q={t.key()}"]
    kh, kw = h, w
    for name in ("phi", "g"):
        t.conv(f"{p}.{name}", b, c, ck, h, w, kernel=1, stride=1, pad=0, role="proj")
        t.note(src=(x,))
        if spec.nl_subsample:
            kh, kw = max_pool2(t, f"{p}.pool_{name}", b, ck, h, w)
        t.note(keep=p, fused_temp=b * ck * kh * kw)
        sources.append(f"{'k' if name == 'phi' else 'v'}={t.key()}")
    t.attention(p, b, 1, h * w, kh * kw, ck)
    t.note(src=tuple(sources), keep=p)  # y, a local to the end
    # W reads the attention's [b, 1, N, C'] output as a [b, C', h, w] view (channels-last strides)
    t.conv(f"{p}.w", b, ck, c, h, w, kernel=1, stride=1, pad=0, bias=False, role="proj")
    t.note(scratch=("conv", "pointwise", 1, b, True))
    t.batch_norm(f"{p}.bn", b * c * h * w, c)
    t.eltwise(p, b * c * h * w)  # x + z
    t.note(reads=(x,))


def resnet_trace(spec: ResNetSpec, h: Any, w: Any, b: Any) -> Trace:
    t = Trace(b)
    c = spec.width
    gh, gw = conv_bn(t, "", "conv1", "bn1", b, spec.in_chans, c, h, w, kernel=STEM_KERNEL, stride=STEM_STRIDE,
                     pad=STEM_PAD, role="embed")
    relu(t, "act1", b * c * gh * gw)
    ph, pw = conv_out(gh, POOL_KERNEL, POOL_STRIDE, POOL_PAD), conv_out(gw, POOL_KERNEL, POOL_STRIDE, POOL_PAD)
    t.eltwise("maxpool", b * c * ph * pw * POOL_KERNEL**2, kind="pool", role="pool", inp=b * c * gh * gw,
              out=b * c * ph * pw)  # one comparison per window tap
    t.note("max_pool")
    gh, gw = ph, pw
    for s, depth in enumerate(spec.depths):
        width = spec.width * 2**s
        nl = spec.non_local_after(s)
        for i in range(depth):
            stride = 2 if s and not i else 1
            with t.block(f"layer{s + 1}.{i}", f"layer{s + 1}", b * c * gh * gw):
                gh, gw = bottleneck(t, f"layer{s + 1}.{i}", b, gh, gw, c, width, spec.expansion * width, stride)
                if i in nl:
                    _poolable(spec, s, gh, gw)
                    non_local(t, f"layer{s + 1}.{i}.nl", b, gh, gw, spec.expansion * width, spec)
            c = spec.expansion * width
    t.eltwise("", b * c, kind="pool", inp=b * c * gh * gw)  # global average pool
    t.linear("fc", b, c, spec.num_classes, role="head")
    return t


def _poolable(spec: ResNetSpec, s: int, h: Any, w: Any) -> None:
    """Subsampling needs a grid of at least 2x2 where a non-local block runs."""
    if spec.nl_subsample and isinstance(h, int) and isinstance(w, int) and min(h, w) < 2:
        raise SpecError(f"stage {s}'s grid is {h}x{w}: the non-local blocks' 2x2 subsampling needs at least 2x2; "
                        f"use a larger input or nl_subsample = false.")


def grid(spec: ResNetSpec, h: Any, w: Any) -> tuple[Any, Any]:
    """The first stage's grid, after the stride-2 stem conv and the stride-2 max pool."""
    stem = conv_out(h, STEM_KERNEL, STEM_STRIDE, STEM_PAD), conv_out(w, STEM_KERNEL, STEM_STRIDE, STEM_PAD)
    return tuple(conv_out(g, POOL_KERNEL, POOL_STRIDE, POOL_PAD) for g in stem)  # type: ignore[return-value]


def lattice(spec: ResNetSpec) -> tuple[int, int]:
    """On multiples of 2 * 2 * 2^(stages-1) every stride-2 layer halves its grid exactly (twice that with
    non-local subsampling, whose 2x2 pools then halve even the last stage's grid)."""
    sub = 2 if spec.nl_subsample and any(spec.nl_every) else 1
    return STEM_STRIDE * POOL_STRIDE * 2 ** (len(spec.depths) - 1) * sub, STEM_STRIDE * POOL_STRIDE


def complexity(spec: ResNetSpec) -> str:
    conv = "O(HW·Cin·Cout·K²)"  # convolutions: every output pixel reads a fixed K x K window
    # a non-local block's scores: every position against every (subsampled) position
    return f"{conv} + O((HW)²·C)" if any(spec.nl_every) else conv


trace = resnet_trace  # the registry reads every family module's `trace`
