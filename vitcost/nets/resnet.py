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
into a new tensor. There is no attention: `attn_mode` is accepted for the uniform builder signature.
"""

from __future__ import annotations

from torch import Tensor, nn

from vitcost.analytic.resnet import POOL_KERNEL, POOL_PAD, POOL_STRIDE, STEM_KERNEL, STEM_PAD, STEM_STRIDE
from vitcost.nets.common import check_input
from vitcost.specs import ResNetSpec


class Bottleneck(nn.Module):
    """[B, cin, h, w] -> [B, cout, ceil(h/stride), ceil(w/stride)]: 1x1 (cin -> width), 3x3 with the
    stride (width -> width), 1x1 (width -> cout), plus the shortcut."""

    def __init__(self, cin: int, width: int, cout: int, stride: int) -> None:
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
        return self.act3(x)


class ResNet(nn.Module):
    """[B, C, H, W] -> [B, num_classes]. Stage s works on a ceil(H/4)/2^s grid (rounded up at each stride)."""

    def __init__(self, spec: ResNetSpec, res: tuple[int, int], attn_mode: str = "math") -> None:
        """`attn_mode` is accepted for a uniform builder signature; ResNet has no attention."""
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
            for i in range(depth):
                blocks.append(Bottleneck(c, width, spec.expansion * width, 2 if s and not i else 1))
                c = spec.expansion * width
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
