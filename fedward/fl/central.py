"""Centralized evaluation of the global model on a server-held test set."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from fedward.config import FedwardConfig
from fedward.data.datasets import make_loader
from fedward.data.decode import Preprocess
from fedward.data.harmonize import harmonize_images
from fedward.data.sources.folders import load_folder
from fedward.data.transforms import ScaleToUnit
from fedward.errors import DataError
from fedward.learning.loops import evaluate, select_device
from fedward.models.groupnorm import build_run_model

Metrics = dict[str, float]


def make_central_evaluator(
    config: FedwardConfig, harmonize_scale: Sequence[float] = ()
) -> Callable[[Mapping[str, torch.Tensor]], Metrics] | None:
    """An evaluator on the server-held test set, or ``None`` if none is configured.

    The test set is a class-folder tree (``server-test-data``); every usable image
    in it is used, mapped onto ``harmonize_scale`` when one is given.
    """
    if not config.server_test_data:
        return None
    data = load_folder(
        Path(config.server_test_data),
        config.classes,
        Preprocess(config.in_channels, config.image_size),
    )
    if harmonize_scale:
        data = dataclasses.replace(
            data, images=harmonize_images(data.images, harmonize_scale)
        )
    if not len(data):
        raise DataError(
            f"server test data {config.server_test_data} has no usable image"
        )
    loader = make_loader(
        data,
        ScaleToUnit(),
        batch_size=config.batch_size,
        shuffle=False,
        seed=config.seed,
    )
    device = select_device(config.device)

    def evaluate_state(state: Mapping[str, torch.Tensor]) -> Metrics:
        model = build_run_model(config)
        model.load_state_dict(dict(state))
        result = evaluate(
            model,
            loader,
            num_classes=config.num_classes,
            device=device,
            channels_last=config.channels_last,
        )
        return result.figures(config.classes)

    return evaluate_state
