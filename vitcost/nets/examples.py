"""Zero-argument model factories for `vitcost check --module` (examples that need nothing beyond
`pip install 'vitcost[torch]'`): any `package.module:factory` that builds an nn.Module works the same way."""

from __future__ import annotations

from torch import nn


def small_cnn() -> nn.Module:
    """A plain CNN: conv-BN-ReLU twice, global average pool, linear classifier (10 classes)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def vit_ti16() -> nn.Module:
    """vitcost's own reference ViT-Ti/16 at 224 px, built as any user module would be."""
    from vitcost.nets.build import build

    return build("vit_ti16", 224)
