"""The site algorithm: local training and evaluation on a hospital's own images.

No Flower import: the ClientApp only translates messages to these calls.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
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
from fedward.data.harmonize import harmonize_images
from fedward.data.transforms import RandomAugment, ScaleToUnit
from fedward.learning.federated import ProximalTerm, round_learning_rate
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
    _harmonized: dict[tuple[float, ...], Site] = field(
        default_factory=dict, repr=False, compare=False
    )

    def harmonized(self, scale: Sequence[float]) -> Site:
        """The site with every image mapped onto a standard intensity scale.

        ``scale`` is the federation's Nyúl-Udupa standard scale
        (:mod:`fedward.data.harmonize`); empty: the site as it is. Mapped images
        are kept per scale, so later rounds reuse them.
        """
        if not scale:
            return self
        key = tuple(round(float(v), 6) for v in scale)
        if key not in self._harmonized:
            mapped = SiteSplits(
                *(
                    dataclasses.replace(part, images=harmonize_images(part.images, key))
                    for part in (self.data.train, self.data.val, self.data.test)
                )
            )
            self._harmonized[key] = Site(self.name, mapped, self.config)
        return self._harmonized[key]

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

    def fit(
        self,
        model: nn.Module,
        server_round: int,
        *,
        proximal_mu: float = 0.0,
        epochs: int | None = None,
        learning_rate: float | None = None,
    ) -> TrainResult:
        """Train ``model`` in place for the configured local epochs.

        The learning rate follows ``lr-schedule`` over the rounds; with
        ``proximal_mu`` > 0 the loss adds FedProx's ``mu/2 * ||w - w_global||^2``,
        ``w_global`` being ``model`` as it is passed in. ``epochs`` and
        ``learning_rate`` override ``local-epochs`` and the schedule.
        """
        cfg = self.config
        epochs = epochs or cfg.local_epochs
        seed = cfg.seed + 1000 * server_round
        seed_everything(seed)
        val = self.data.val
        val_loader = self._loader(val, training=False, seed=seed) if len(val) else None
        rate = learning_rate or round_learning_rate(
            cfg.learning_rate, cfg.lr_schedule, server_round, cfg.num_server_rounds
        )
        proximal = ProximalTerm(model, proximal_mu) if proximal_mu > 0 else None
        with ProgressBar(f"{self.name} epoch", epochs) as bar:
            result = train(
                model,
                self._loader(self.data.train, training=True, seed=seed),
                epochs=epochs,
                learning_rate=rate,
                device=select_device(cfg.device),
                num_classes=cfg.num_classes,
                val_loader=val_loader,
                channels_last=cfg.channels_last,
                on_epoch=lambda s: bar.step(epoch_message(s)),
                regularizer=proximal,
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

    def personalize(self, model: nn.Module) -> int:
        """Fine-tune the final global model on this site's training images.

        Up to ``personalize-epochs`` epochs at ``learning-rate``; the epoch best
        on the site's validation images by ``best-metric`` is kept, the global
        model itself (0 epochs) included and preferred on a tie, so fine-tuning
        never makes that figure worse. Without validation images every epoch is
        kept. Returns the epochs kept.
        """
        cfg = self.config
        after = cfg.num_server_rounds
        if not len(self.data.val):
            self.fit(model, after + 1, epochs=cfg.personalize_epochs,
                     learning_rate=cfg.learning_rate)  # fmt: skip
            return cfg.personalize_epochs
        best_score = self._validation_score(model)
        best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        kept = 0
        for epoch in range(1, cfg.personalize_epochs + 1):
            self.fit(model, after + epoch, epochs=1, learning_rate=cfg.learning_rate)
            score = self._validation_score(model)
            if score > best_score:
                best_score, kept = score, epoch
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best)
        logger.info("%s: personalised, kept %d epoch(s)", self.name, kept)
        return kept

    def _validation_score(self, model: nn.Module) -> float:
        """``best-metric`` on the validation images, higher is better."""
        metric = self.config.best_metric
        figures = self.evaluate(model, "val").figures(self.config.classes)
        value = float(figures[metric])
        return -value if metric == "loss" else value

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


class TrainHook(Protocol):
    """What a simulation may change in a hospital's training, to test defences.

    The deployed ClientApp runs none; ``fedward simulate`` sets one for the
    hospitals its ``[[attack]]`` tables name (:mod:`fedward.simulation.attacks`).
    """

    def before_fit(self, site: Site, server_round: int) -> Site:
        """The site to train on (a label-flipping one, say)."""

    def after_fit(
        self,
        site: Site,
        server_round: int,
        sent: dict[str, torch.Tensor],
        trained: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """The weights to send, from the weights received and those trained."""
