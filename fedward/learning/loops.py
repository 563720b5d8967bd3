"""Local training and evaluation loops in plain PyTorch (no Flower import)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fedward.metrics.counts import EvalCounts

logger = logging.getLogger(__name__)

Batch = dict[str, Any]


def select_device(name: str = "auto") -> torch.device:
    """``cuda`` when asked for or available (``auto``), else ``cpu``."""
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_model(
    model: nn.Module, device: torch.device, channels_last: bool
) -> nn.Module:
    """Move ``model`` to ``device``, channels-last if asked (faster on CPU)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


@dataclass
class EpochStats:
    """Figures of one local epoch."""

    train_loss: float
    train_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass
class TrainResult:
    """What local training did."""

    num_examples: int
    seconds: float
    epochs: list[EpochStats] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Training throughput over all epochs."""
        total = self.num_examples * len(self.epochs)
        return total / self.seconds if self.seconds > 0 else 0.0


def _to_device(
    batch: Batch, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    images = batch["image"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, batch["label"].to(device, non_blocking=True)


def train(
    model: nn.Module,
    loader: Iterable[Batch],
    *,
    epochs: int,
    learning_rate: float,
    device: torch.device,
    num_classes: int,
    val_loader: Iterable[Batch] | None = None,
    channels_last: bool = True,
    on_epoch: Callable[[EpochStats], None] | None = None,
    regularizer: Callable[[nn.Module], torch.Tensor] | None = None,
) -> TrainResult:
    """Train with Adam and cross-entropy, validating after each epoch.

    Uses automatic mixed precision on CUDA. ``regularizer(model)``, when given,
    is added to each batch's loss (FedProx's proximal term).
    """
    model = prepare_model(model, device, channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    criterion = nn.CrossEntropyLoss()
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    result = TrainResult(num_examples=0, seconds=0.0)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for batch in loader:
            images, labels = _to_device(batch, device, channels_last)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=use_amp):
                logits = model(images)
                loss = criterion(logits, labels)
                objective = loss if regularizer is None else loss + regularizer(model)
            scaler.scale(objective).backward()
            scaler.step(optimizer)
            scaler.update()
            n = labels.shape[0]
            loss_sum += float(loss.detach()) * n
            correct += int((logits.detach().argmax(1) == labels).sum())
            seen += n
        stats = EpochStats(loss_sum / max(seen, 1), correct / max(seen, 1))
        if val_loader is not None:
            val = evaluate(
                model,
                val_loader,
                num_classes=num_classes,
                device=device,
                channels_last=channels_last,
            )
            if val.num_examples:
                stats.val_loss, stats.val_accuracy = val.loss, val.accuracy
        result.epochs.append(stats)
        result.num_examples = seen
        if on_epoch is not None:
            on_epoch(stats)
        logger.debug("epoch %d: %s", len(result.epochs), stats)
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    *,
    num_classes: int,
    device: torch.device,
    channels_last: bool = True,
) -> EvalCounts:
    """Summed cross-entropy, confusion matrix, score histograms and calibration."""
    model = prepare_model(model, device, channels_last)
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    counts = EvalCounts.empty(num_classes)
    for batch in loader:
        images, labels = _to_device(batch, device, channels_last)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits = model(images).float()
        loss = float(criterion(logits, labels))
        probs = torch.softmax(logits, dim=1).cpu().numpy()
        counts = counts + EvalCounts.of_batch(probs, labels.cpu().numpy(), loss)
    return counts
