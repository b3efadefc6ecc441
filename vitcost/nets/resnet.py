"""ResNet with bottleneck blocks (He et al. 2016) as torch modules, "ResNet v1.5" as in timm and
torchvision (the stride on the 3x3 conv), with their module names:
conv1 (7x7 stride 2) -> bn1 -> act1 -> maxpool (3x3 stride 2) -> layer1.. (nn.Sequential of bottlenecks)
-> global average pool -> fc.

A bottleneck follows timm's Bottleneck (torchvision's is the same up to names): every conv is bias-free
and followed by BatchNorm, every ReLU is in place (`nn.ReLU(inplace=True)`), and the shortcut is added
in place:
    shortcut = x
    x = act1(bn1(conv1(x))); x = act2(bn2(conv2(x))); x = bn3(conv3(x))     each step rebinding x
    shortcut = downsample(shortcut)                                          first block of a stage
    x += shortcut; x = act3(x)
Counts and memory are for inference (`.eval()`): BatchNorm then normalises with its running statistics
into a new tensor.

A bottleneck the spec gives a non-local block (`ResNetSpec.nl_every`) runs it last, on its output, as
`nl` (mmaction2's ResNet3d keeps its non-local block in the bottleneck the same way). The block follows
mmcv's NonLocal2d in the embedded-Gaussian mode with the scale: theta, phi, g 1x1 convs with bias to
C' channels (phi and g each followed by a 2x2 max pool when subsampling), the attention
softmax(theta^T phi / sqrt(C')) g through `AttentionCore.attend`, read back as a [B, C', h, w] view
(channels-last strides), a bias-free 1x1 conv to C and a BatchNorm with zero-initialised gamma, and
`x + z` (a new tensor). math multiplies the channel-major views [B, 1, N, C'] of the conv outputs as
they are (torch's matmul reads the transposed layout without a copy, as mmcv's does); the fused kernel
needs the last dim contiguous, so sdpa lays q, k, v out as token-major copies first. Without non-local
blocks there is no attention, and `attn_mode` is accepted for the uniform builder signature.
"""

from __future__ import annotations

from torch import Tensor, nn

from vitcost.analytic.resnet import POOL_KERNEL, POOL_PAD, POOL_STRIDE, STEM_KERNEL, STEM_PAD, STEM_STRIDE
from vitcost.nets.common import AttentionCore, check_input
from vitcost.specs import ResNetSpec


def _tokens(x: Tensor, contiguous: bool) -> Tensor:
    """[B, C', h, w] -> [B, 1, h*w, C']: a view (channel-major), or a token-major copy."""
    x = x.flatten(2).transpose(1, 2).unsqueeze(1)
    return x.contiguous() if contiguous else x


class NonLocal(AttentionCore):
    """[B, C, h, w] -> [B, C, h, w]: x + BN(W softmax(theta(x)^T phi(x) / sqrt(C')) g(x)) (module docstring)."""

    def __init__(self, c: int, reduction: int, subsample: bool, attn_mode: str) -> None:
        super().__init__(attn_mode)
        ck = c // reduction
        self.theta = nn.Conv2d(c, ck, 1)
        self.phi = nn.Conv2d(c, ck, 1)
        self.pool_phi = nn.MaxPool2d(2) if subsample else None
        self.g = nn.Conv2d(c, ck, 1)
        self.pool_g = nn.MaxPool2d(2) if subsample else None
        self.w = nn.Conv2d(ck, c, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        nn.init.zeros_(self.bn.weight)  # the block starts as the identity (Wang et al.)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        fused = self.attn_mode != "math"
        q = _tokens(self.theta(x), fused)
        k = self.phi(x)
        if self.pool_phi is not None:
            k = self.pool_phi(k)
        k = _tokens(k, fused)
        v = self.g(x)
        if self.pool_g is not None:
            v = self.pool_g(v)
        v = _tokens(v, fused)
        y = self.attend(q, k, v).squeeze(1).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.bn(self.w(y))


class Bottleneck(nn.Module):
    """[B, cin, h, w] -> [B, cout, ceil(h/stride), ceil(w/stride)]: 1x1 (cin -> width), 3x3 with the
    stride (width -> width), 1x1 (width -> cout), plus the shortcut; then the non-local block `nl`, if any."""

    def __init__(self, cin: int, width: int, cout: int, stride: int, nl: NonLocal | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)
        self.nl = nl

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)
        x = self.conv2(x)
        x = self.bn2(x)
        x = self.act2(x)
        x = self.conv3(x)
        x = self.bn3(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x += shortcut
        x = self.act3(x)
        return x if self.nl is None else self.nl(x)


class ResNet(nn.Module):
    """[B, C, H, W] -> [B, num_classes]. Stage s works on a ceil(H/4)/2^s grid (rounded up at each stride)."""

    def __init__(self, spec: ResNetSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        """`attn_mode`: the non-local blocks' attention path (ignored without them)."""
        super().__init__()
        self.spec, self.res = spec, res
        c = spec.width
        self.conv1 = nn.Conv2d(spec.in_chans, c, STEM_KERNEL, stride=STEM_STRIDE, padding=STEM_PAD, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(POOL_KERNEL, stride=POOL_STRIDE, padding=POOL_PAD)
        self.stage_names: list[str] = []
        for s, depth in enumerate(spec.depths):
            width = spec.width * 2**s
            blocks = []
            nl = spec.non_local_after(s)
            for i in range(depth):
                cout = spec.expansion * width
                block_nl = NonLocal(cout, spec.nl_reduction, spec.nl_subsample, attn_mode) if i in nl else None
                blocks.append(Bottleneck(c, width, cout, 2 if s and not i else 1, block_nl))
                c = cout
            self.stage_names.append(f"layer{s + 1}")
            self.add_module(self.stage_names[-1], nn.Sequential(*blocks))
        self.fc = nn.Linear(c, spec.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.res, self.spec.in_chans)
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)
        x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(x.mean(dim=(2, 3)))
