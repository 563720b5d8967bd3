"""Exact global figures from hospitals' confusion matrices; central evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedward.common.config import FedwardConfig
from fedward.common.data.datasets import make_loader
from fedward.common.data.decode import Preprocess
from fedward.common.data.folders import load_folder
from fedward.common.data.transforms import ScaleToUnit
from fedward.common.errors import DataError
from fedward.common.metrics import sum_confusion, summarize
from fedward.common.models import get_model
from fedward.common.training import evaluate, select_device

Metrics = dict[str, float]


@dataclass(frozen=True)
class SiteEvaluation:
    """What one hospital reported for the global model on its held-out images."""

    site: str
    num_examples: int
    loss_sum: float
    confusion: np.ndarray

    def metrics(self, class_names: Sequence[str]) -> Metrics:
        """Loss and classification metrics of this site alone."""
        loss = self.loss_sum / self.num_examples if self.num_examples else 0.0
        return {"loss": loss, **summarize(self.confusion, class_names)}

    @classmethod
    def parse(
        cls, site: str, values: Mapping[str, object], num_classes: int
    ) -> SiteEvaluation:
        """Check and convert a hospital's reported counts.

        Raises
        ------
        DataError
            If the confusion matrix has the wrong size, negative or non-integer
            counts, or does not add up to the reported number of examples.
        """
        raw = values.get("confusion-matrix")
        if not isinstance(raw, list) or len(raw) != num_classes * num_classes:
            raise DataError(
                f"{site}: confusion matrix is not {num_classes}x{num_classes}"
            )
        cm = np.asarray(raw, dtype=np.float64)
        if (cm < 0).any() or (cm != np.round(cm)).any():
            raise DataError(
                f"{site}: confusion matrix holds negative or fractional counts"
            )
        n = values.get("num-examples")
        loss_sum = values.get("loss-sum")
        if not isinstance(n, int | float) or int(cm.sum()) != int(n):
            raise DataError(f"{site}: confusion matrix does not add up to num-examples")
        if not isinstance(loss_sum, int | float) or not np.isfinite(loss_sum):
            raise DataError(f"{site}: loss-sum is missing or not finite")
        matrix = cm.astype(np.int64).reshape(num_classes, num_classes)
        return cls(site, int(n), float(loss_sum), matrix)


def global_metrics(
    sites: Sequence[SiteEvaluation], class_names: Sequence[str]
) -> Metrics:
    """Figures of the pooled predictions: summed counts, never averaged scores."""
    total = sum(s.num_examples for s in sites)
    loss = sum(s.loss_sum for s in sites) / total if total else 0.0
    cm = sum_confusion(s.confusion for s in sites)
    return {"loss": loss, **summarize(cm, class_names)}


def make_central_evaluator(
    config: FedwardConfig,
) -> Callable[[Mapping[str, torch.Tensor]], Metrics] | None:
    """An evaluator on the server-held test set, or ``None`` if none is configured.

    The test set is a class-folder tree (``server-test-data``); every usable image
    in it is used.
    """
    if not config.server_test_data:
        return None
    data = load_folder(
        Path(config.server_test_data),
        config.classes,
        Preprocess(config.in_channels, config.image_size),
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
        model = get_model(
            config.model,
            num_classes=config.num_classes,
            in_channels=config.in_channels,
            image_size=config.image_size,
        )
        model.load_state_dict(dict(state))
        result = evaluate(
            model,
            loader,
            num_classes=config.num_classes,
            device=device,
            channels_last=config.channels_last,
        )
        return {"loss": result.loss, **summarize(result.confusion, config.classes)}

    return evaluate_state
