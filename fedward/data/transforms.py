"""Small callables on uint8 ``(C, H, W)`` tensors: scaling and augmentation."""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as tvf


class ScaleToUnit:
    """uint8 ``[0, 255]`` to float32 ``[0, 1]`` (the seed's ``rescale=1/255``)."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Scale one image."""
        return image.to(torch.float32).div_(255.0)


class RandomAugment:
    """The seed's training augmentation, then scaling to [0, 1].

    Parameters
    ----------
    shear
        Maximum shear angle in radians (Keras ``shear_range=0.2``); sampled
        uniformly in ``[-shear, shear]``.
    zoom
        Zoom range: the scale factor is uniform in ``[1 - zoom, 1 + zoom]``.
    horizontal_flip
        Flip left-right with probability 0.5.
    """

    def __init__(self, shear: float, zoom: float, horizontal_flip: bool) -> None:
        self.shear_degrees = math.degrees(shear)
        self.zoom = zoom
        self.horizontal_flip = horizontal_flip
        self.scale = ScaleToUnit()

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Augment and scale one image."""
        draws = torch.rand(3).tolist()
        shear = (2.0 * draws[0] - 1.0) * self.shear_degrees
        scale = 1.0 + (2.0 * draws[1] - 1.0) * self.zoom
        if shear or scale != 1.0:
            image = tvf.affine(
                image,
                angle=0.0,
                translate=[0, 0],
                scale=scale,
                shear=[shear, 0.0],
                interpolation=tvf.InterpolationMode.BILINEAR,
            )
        if self.horizontal_flip and draws[2] < 0.5:
            image = tvf.horizontal_flip(image)
        return self.scale(image)
