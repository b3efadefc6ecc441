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
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.ints import conv_out
from vitcost.analytic.peaks import Block, PeakSteps, conv_scratch, conv_weight
from vitcost.analytic.trace import Trace
from vitcost.specs import ResNetSpec

STEM_KERNEL, STEM_STRIDE, STEM_PAD = 7, 2, 3
POOL_KERNEL, POOL_STRIDE, POOL_PAD = 3, 2, 1


def conv_bn(t: Trace, p: str, conv: str, bn: str, b: Any, cin: int, cout: int, h: Any, w: Any, *, kernel: int,
            stride: int, pad: int, role: str = "mlp", src: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """A bias-free conv and the BatchNorm after it; returns the output grid. `src`: the conv's producer,
    when it does not read the previous op's output."""
    ho, wo = t.conv(f"{p}{conv}", b, cin, cout, h, w, kernel=kernel, stride=stride, pad=pad, bias=False, role=role)
    if src:
        t.note(src=src)
    t.batch_norm(f"{p}{bn}", b * cout * ho * wo, cout)
    return ho, wo


def relu(t: Trace, path: str, elems: Any) -> None:
    t.eltwise(path, elems, kind="relu", inp=elems)  # in place: reads and writes the same tensor


def bottleneck(t: Trace, p: str, b: Any, h: Any, w: Any, cin: int, width: int, cout: int, stride: int
               ) -> tuple[Any, Any]:
    """One bottleneck on [b, cin, h, w] -> [b, cout, ho, wo], path prefix `p` (timm's/torchvision's names)."""
    block_input = t.key()
    h1, w1 = conv_bn(t, p, ".conv1", ".bn1", b, cin, width, h, w, kernel=1, stride=1, pad=0)
    relu(t, f"{p}.act1", b * width * h1 * w1)
    h2, w2 = conv_bn(t, p, ".conv2", ".bn2", b, width, width, h1, w1, kernel=3, stride=stride, pad=1)
    relu(t, f"{p}.act2", b * width * h2 * w2)
    conv_bn(t, p, ".conv3", ".bn3", b, width, cout, h2, w2, kernel=1, stride=1, pad=0)
    if stride != 1 or cin != cout:  # projection shortcut
        # the shortcut conv reads the block input
        conv_bn(t, p, ".downsample.0", ".downsample.1", b, cin, cout, h, w, kernel=1, stride=stride, pad=0,
                src=(block_input,))
    out = b * cout * h2 * w2
    t.eltwise(p, out)  # x += shortcut
    t.note("branch_copied")  # in place on bn3's output, with the shortcut run in between
    relu(t, f"{p}.act3", out)
    return h2, w2


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
        for i in range(depth):
            stride = 2 if s and not i else 1
            with t.block(f"layer{s + 1}.{i}", f"layer{s + 1}", b * c * gh * gw):
                gh, gw = bottleneck(t, f"layer{s + 1}.{i}", b, gh, gw, c, width, spec.expansion * width, stride)
            c = spec.expansion * width
    t.eltwise("", b * c, kind="pool", inp=b * c * gh * gw)  # global average pool
    t.linear("fc", b, c, spec.num_classes, role="head")
    return t


def grid(spec: ResNetSpec, h: Any, w: Any) -> tuple[Any, Any]:
    """The first stage's grid, after the stride-2 stem conv and the stride-2 max pool."""
    stem = conv_out(h, STEM_KERNEL, STEM_STRIDE, STEM_PAD), conv_out(w, STEM_KERNEL, STEM_STRIDE, STEM_PAD)
    return tuple(conv_out(g, POOL_KERNEL, POOL_STRIDE, POOL_PAD) for g in stem)  # type: ignore[return-value]


def lattice(spec: ResNetSpec) -> tuple[int, int]:
    """On multiples of 2 * 2 * 2^(stages-1) every stride-2 layer halves its grid exactly."""
    return STEM_STRIDE * POOL_STRIDE * 2 ** (len(spec.depths) - 1), STEM_STRIDE * POOL_STRIDE


def complexity(spec: ResNetSpec) -> str:
    return "O(HW·Cin·Cout·K²)"  # convolutions: every output pixel reads a fixed K x K window


# ---------------------------------------------------------------------------------------------
# Memory: nets.resnet.Bottleneck


def block_memory(peak: PeakSteps, blk: Block, spec: ResNetSpec, b: int, e: int, fused: bool, outer: int) -> None:
    """shortcut = x; then conv -> BN -> in-place ReLU three times (no ReLU after the third), each step
    rebinding x: a conv's output is freed once its BatchNorm (eval mode: a new tensor) returns, and an
    in-place ReLU allocates nothing. The projection shortcut (conv + BN, an nn.Sequential) runs after
    bn3, so bn3's output is alive through it; `x += shortcut` and the last ReLU are in place. The block
    input stays alive throughout (the caller's reference, and the identity shortcut).

    Allocator level (CPU): the 3x3 conv reorders its input and weights, the 1x1 convs need no scratch on
    one thread, an output buffer on more, and the strided shortcut conv its input, weights and strided
    gathers (`peaks.conv_scratch`)."""
    x = blk.find("conv1").inp
    c1, c2, c3 = blk.out("conv1"), blk.out("conv2"), blk.out("conv3")
    base = outer + x * e
    conv1, conv2, conv3 = blk.find("conv1"), blk.find("conv2"), blk.find("conv3")
    peak.at(base + c1 * e, f"{blk.p}.conv1", conv_scratch(peak, "pointwise", x, c1, conv_weight(conv1), e))
    peak.at(base + 2 * c1 * e, f"{blk.p}.bn1")  # conv1's output and bn1's
    peak.at(base + (c1 + c2) * e, f"{blk.p}.conv2", conv_scratch(peak, "conv", c1, c2, conv_weight(conv2), e))
    peak.at(base + 2 * c2 * e, f"{blk.p}.bn2")
    peak.at(base + (c2 + c3) * e, f"{blk.p}.conv3", conv_scratch(peak, "pointwise", c2, c3, conv_weight(conv3), e))
    peak.at(base + 2 * c3 * e, f"{blk.p}.bn3")
    down = blk.find("downsample.0")
    if down is not None:  # bn3's output, the shortcut conv's output and its BatchNorm's
        d = down.out
        stride = 2 if c1 > c2 else 1  # the block's stride, on its 3x3 conv and its shortcut
        scratch = conv_scratch(peak, "pointwise", x, d, conv_weight(down), e, stride=stride, images=b)
        peak.at(base + (c3 + d) * e, f"{blk.p}.downsample.0", scratch)
        peak.at(base + (c3 + 2 * d) * e, f"{blk.p}.downsample")


trace = resnet_trace  # the registry reads every family module's `trace`
