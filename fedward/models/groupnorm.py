"""GroupNorm variants of the BatchNorm models, for differentially private training.

DP-SGD needs each image's gradient on its own, and BatchNorm mixes the images
of a batch, so Opacus refuses it. Each BatchNorm model has a registered
``<name>-gn`` variant whose BatchNorm layers are GroupNorm, made by Opacus'
``ModuleValidator.fix`` (``gcd(32, channels)`` groups, parameter names kept).
A run that asks for DP uses the variant everywhere (:func:`run_model_name`):
every hospital, the server and the model card, so they share one architecture.
"""

from __future__ import annotations

import logging

from torch import nn

from fedward.config import FedwardConfig
from fedward.models import get_model, register_model
from fedward.models.seed_cnn import seed_cnn_bn
from fedward.models.torchvision_models import densenet121, resnet18

# base model -> its GroupNorm variant
GROUPNORM_VARIANTS = {
    "seed-cnn-bn": "seed-cnn-gn",
    "resnet18": "resnet18-gn",
    "densenet121": "densenet121-gn",
}


def to_groupnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer replaced by GroupNorm (Opacus' fix)."""
    from opacus.validators import ModuleValidator

    # Opacus logs one INFO line per replaced layer
    opacus_log = logging.getLogger("opacus.validators.batch_norm")
    level = opacus_log.level
    opacus_log.setLevel(logging.WARNING)
    try:
        fixed: nn.Module = ModuleValidator.fix(model)
    finally:
        opacus_log.setLevel(level)
    return fixed


@register_model("seed-cnn-gn")
def seed_cnn_gn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """The seed CNN with GroupNorm after each convolution (``seed-cnn-bn`` under DP)."""
    return to_groupnorm(seed_cnn_bn(num_classes, in_channels, image_size))


@register_model("resnet18-gn")
def resnet18_gn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet-18 with GroupNorm instead of BatchNorm."""
    return to_groupnorm(resnet18(num_classes, in_channels, image_size))


@register_model("densenet121-gn")
def densenet121_gn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """DenseNet-121 with GroupNorm instead of BatchNorm."""
    return to_groupnorm(densenet121(num_classes, in_channels, image_size))


def run_model_name(config: FedwardConfig) -> str:
    """The architecture a run trains: the GroupNorm variant when it asks for DP."""
    if config.dp:
        return GROUPNORM_VARIANTS.get(config.model, config.model)
    return config.model


def build_run_model(config: FedwardConfig) -> nn.Module:
    """A freshly initialised model of the run's architecture and input shape."""
    return get_model(
        run_model_name(config),
        num_classes=config.num_classes,
        in_channels=config.in_channels,
        image_size=config.image_size,
    )
