"""The seed CNN: three conv/pool blocks and two dense layers."""

from __future__ import annotations

import torch
from torch import nn

from fedward.errors import ModelError
from fedward.models import register_model


def _feature_side(image_size: int) -> int:
    side = image_size
    for _ in range(3):
        side = (side - 2) // 2  # 3x3 valid convolution, then 2x2 max-pool
    return side


class SeedCNN(nn.Module):
    """Conv(32)-Pool-Conv(64)-Pool-Conv(128)-Pool-Dense(512)-Dense(classes).

    At 150x150x3 with two classes it has 19,034,690 parameters. The last layer
    returns logits; softmax is folded into the cross-entropy loss. With
    ``batch_norm`` a BatchNorm follows each convolution (``seed-cnn-bn``, for
    site-local normalisation).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        side = _feature_side(image_size)
        if side < 1:
            raise ModelError(f"seed-cnn needs image_size >= 22, got {image_size}")
        layers: list[nn.Module] = []
        for c_in, c_out in ((in_channels, 32), (32, 64), (64, 128)):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(128 * side * side, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch ``(N, C, H, W)`` in [0, 1]."""
        out: torch.Tensor = self.classifier(self.features(x))
        return out


@register_model("seed-cnn")
def seed_cnn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build the seed CNN."""
    return SeedCNN(num_classes, in_channels, image_size)


@register_model("seed-cnn-bn")
def seed_cnn_bn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build the seed CNN with BatchNorm after each convolution (FedBN)."""
    return SeedCNN(num_classes, in_channels, image_size, batch_norm=True)
