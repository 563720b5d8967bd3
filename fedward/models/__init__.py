"""Model registry: build any architecture by name, as torchvision's ``get_model``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fedward.errors import ModelError

ModelBuilder = Callable[[int, int, int], nn.Module]

_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Register ``builder(num_classes, in_channels, image_size)`` under ``name``."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_model(
    name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 150
) -> nn.Module:
    """Build a randomly initialised model by name.

    Parameters
    ----------
    name
        A name from :func:`list_models`.
    num_classes
        Size of the output layer.
    in_channels
        1 (grayscale) or 3 (RGB) input channels.
    image_size
        Side of the square input image in pixels.

    Raises
    ------
    ModelError
        If the name is unknown or the shape is impossible for the architecture.
    """
    builder = _REGISTRY.get(name)
    if builder is None:
        raise ModelError(f"unknown model '{name}'; choose one of {list_models()}")
    if num_classes < 2:
        raise ModelError(f"num_classes must be at least 2, got {num_classes}")
    return builder(num_classes, in_channels, image_size)


# Importing the modules registers their architectures.
from fedward.models import groupnorm, seed_cnn, torchvision_models  # noqa: E402

__all__ = [
    "get_model",
    "groupnorm",
    "list_models",
    "register_model",
    "seed_cnn",
    "torchvision_models",
]
