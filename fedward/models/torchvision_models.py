"""torchvision ResNet-18 and DenseNet-121, randomly initialised (no download)."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from fedward.models import register_model


@register_model("resnet18")
def resnet18(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet-18 with its stem adapted to ``in_channels``."""
    model: nn.Module = tvm.resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(
            in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
        )
    return model


@register_model("densenet121")
def densenet121(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """DenseNet-121 with its stem adapted to ``in_channels``."""
    model: nn.Module = tvm.densenet121(weights=None, num_classes=num_classes)
    if in_channels != 3:
        stem = nn.Conv2d(
            in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
        )
        model.get_submodule("features").add_module("conv0", stem)
    return model
