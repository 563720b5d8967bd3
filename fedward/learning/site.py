"""The site algorithm: local training and evaluation on a hospital's own images.

No Flower import: the ClientApp only translates messages to these calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn
from torch.utils.data import DataLoader

from fedward.config import FedwardConfig
from fedward.console import ProgressBar
from fedward.data.datasets import (
    DecodedImages,
    Item,
    SiteSplits,
    Transform,
    make_loader,
)
from fedward.data.transforms import RandomAugment, ScaleToUnit
from fedward.learning.loops import (
    EpochStats,
    TrainResult,
    evaluate,
    seed_everything,
    select_device,
    train,
)
from fedward.metrics.counts import EvalCounts
from fedward.models.groupnorm import build_run_model

logger = logging.getLogger(__name__)


def epoch_message(stats: EpochStats) -> str:
    """One line of an epoch's figures, for the progress bar."""
    text = f"loss {stats.train_loss:.4f}  accuracy {stats.train_accuracy:.3f}"
    if stats.val_loss is not None:
        text += (
            f"  val-loss {stats.val_loss:.4f}  val-accuracy {stats.val_accuracy:.3f}"
        )
    return text


@dataclass
class Site:
    """One hospital: its name, its images and the federation's settings."""

    name: str
    data: SiteSplits
    config: FedwardConfig

    def new_model(self) -> nn.Module:
        """A fresh model of the configured architecture."""
        return build_run_model(self.config)

    def transform(self, *, training: bool) -> Transform:
        """uint8 image to model input: augmented when training (if configured)."""
        cfg = self.config
        if training and cfg.augment:
            return RandomAugment(cfg.shear, cfg.zoom, cfg.horizontal_flip)
        return ScaleToUnit()

    def _loader(
        self, data: DecodedImages, *, training: bool, seed: int
    ) -> DataLoader[Item]:
        cfg = self.config
        return make_loader(
            data,
            self.transform(training=training),
            batch_size=cfg.batch_size,
            shuffle=training,
            seed=seed,
            num_workers=cfg.num_workers,
        )

    def fit(self, model: nn.Module, server_round: int) -> TrainResult:
        """Train ``model`` in place for the configured local epochs."""
        cfg = self.config
        seed = cfg.seed + 1000 * server_round
        seed_everything(seed)
        val = self.data.val
        val_loader = self._loader(val, training=False, seed=seed) if len(val) else None
        with ProgressBar(f"{self.name} epoch", cfg.local_epochs) as bar:
            result = train(
                model,
                self._loader(self.data.train, training=True, seed=seed),
                epochs=cfg.local_epochs,
                learning_rate=cfg.learning_rate,
                device=select_device(cfg.device),
                num_classes=cfg.num_classes,
                val_loader=val_loader,
                channels_last=cfg.channels_last,
                on_epoch=lambda s: bar.step(epoch_message(s)),
            )
        model.to("cpu")
        logger.info(
            "%s: round %d trained on %d images at %.1f images/s",
            self.name,
            server_round,
            result.num_examples,
            result.images_per_second,
        )
        return result

    def evaluate(self, model: nn.Module, split: str) -> EvalCounts:
        """Loss and confusion matrix of ``model`` on one of the site's splits."""
        cfg = self.config
        result = evaluate(
            model,
            self._loader(self.data.get(split), training=False, seed=cfg.seed),
            num_classes=cfg.num_classes,
            device=select_device(cfg.device),
            channels_last=cfg.channels_last,
        )
        model.to("cpu")
        return result
