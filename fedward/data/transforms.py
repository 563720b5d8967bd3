"""Small callables on uint8 ``(C, H, W)`` tensors: scaling and augmentation."""

from __future__ import annotations

import math

import torch
from torchvision.transforms import v2


class ScaleToUnit:
    """uint8 ``[0, 255]`` to float32 ``[0, 1]`` (the seed's ``rescale=1/255``)."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Scale one image."""
        return image.to(torch.float32).div_(255.0)


class RandomAugment:
    """The seed's training augmentation (torchvision v2), then scaling to [0, 1].

    Parameters
    ----------
    shear
        Maximum shear angle in radians (Keras ``shear_range=0.2``); the angle is
        uniform in ``[-shear, shear]``.
    zoom
        Zoom range: the scale factor is uniform in ``[1 - zoom, 1 + zoom]``.
    horizontal_flip
        Flip left-right with probability 0.5.
    """

    def __init__(self, shear: float, zoom: float, horizontal_flip: bool) -> None:
        steps: list[v2.Transform] = []
        if shear or zoom:
            degrees = math.degrees(shear)
            steps.append(
                v2.RandomAffine(
                    degrees=0.0,
                    scale=(1.0 - zoom, 1.0 + zoom),
                    shear=(-degrees, degrees),
                    interpolation=v2.InterpolationMode.BILINEAR,
                )
            )
        if horizontal_flip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        self.augment = v2.Compose(steps) if steps else v2.Identity()
        self.scale = ScaleToUnit()

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Augment and scale one image."""
        augmented: torch.Tensor = self.augment(image)
        return self.scale(augmented)
