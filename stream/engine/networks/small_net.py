"""A small face embedder trained from scratch: the second option next to the dlib ResNet.

Five stride-2 stages of conv-BN-ReLU (width 16 -> 256, about 0.6 M parameters and
72 M multiply-adds at 150x150, against 271 M for the dlib ResNet), global average
pooling and a linear 128-d embedding. It takes the same normalised 150x150 chips
as the dlib ResNet, so data, cache, engines and the gallery need nothing special
for it. It has no pretrained weights: useful as a from-scratch control in
experiments, or where a lighter model matters more than accuracy (it needs far
more identities than the test photos to be any good).
"""

from __future__ import annotations

from torch import nn

from facestream.stream.engine.networks.registry import register_network
from facestream.stream.engine.networks.staged import StagedNet

STAGE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4", "head")


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallNet(StagedNet):
    """Input ``(N, 3, S, S)`` normalised like the dlib ResNet; output a raw ``embedding_dim`` descriptor."""

    stage_names = STAGE_NAMES

    def __init__(self, embedding_dim: int = 128, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(*_conv_bn(3, w, 2))
        self.stage1 = nn.Sequential(*_conv_bn(w, w * 2, 2), *_conv_bn(w * 2, w * 2, 1))
        self.stage2 = nn.Sequential(*_conv_bn(w * 2, w * 4, 2), *_conv_bn(w * 4, w * 4, 1))
        self.stage3 = nn.Sequential(*_conv_bn(w * 4, w * 8, 2), *_conv_bn(w * 8, w * 8, 1))
        self.stage4 = nn.Sequential(*_conv_bn(w * 8, w * 16, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1),
                                  nn.Linear(w * 16, embedding_dim), nn.BatchNorm1d(embedding_dim))



@register_network(name="small_net")
def small_net(pretrained: bool = False, **kwargs) -> SmallNet:
    """A from-scratch embedder; it has no pretrained weights (``pretrained`` is accepted and ignored)."""
    return SmallNet(**kwargs)
