"""DP-SGD with Opacus: Poisson sampling, per-unit clipping, Gaussian noise.

No Flower import. The sampling unit is a patient where the site knows its
patients (each step samples patients, each sampled patient gives one of their
images, picked at random), otherwise an image. Either way each unit adds one
clipped gradient to a step, so the accountant's ε protects that unit.

The Poisson sampling and the noise draw from generators seeded with fresh
operating-system randomness, never from the run's seed: the server knows that
seed, and noise it could regenerate would protect nothing. Private rounds
therefore do not repeat exactly.
"""

from __future__ import annotations

import logging
import secrets
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fedward.data.datasets import DecodedImages, Transform
from fedward.errors import PrivacyError
from fedward.learning.loops import EpochStats, TrainResult
from fedward.learning.privacy import Mechanism, RoundPlan

if TYPE_CHECKING:
    from opacus.optimizers import DPOptimizer

logger = logging.getLogger(__name__)


class PrivacyUnits(Dataset[tuple[torch.Tensor, int]]):
    """One item per privacy unit: a patient's image picked at random, or an image.

    Parameters
    ----------
    data
        The site's training images.
    transform
        Applied to the uint8 image (augmentation, scaling).
    groups
        The (hashed) patient of each image, or ``None``: every image is a unit.
    seed
        Seeds the choice of a patient's image (``None``: fresh randomness).
    """

    def __init__(
        self,
        data: DecodedImages,
        transform: Transform,
        groups: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> None:
        self.data = data
        self.transform = transform
        self.unit = "image" if groups is None else "patient"
        if groups is None:
            self.members = [np.array([i]) for i in range(len(data))]
        else:
            keys = np.asarray(groups)
            self.members = [np.flatnonzero(keys == k) for k in sorted(set(groups))]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images = self.members[index]
        j = int(
            images[self.rng.integers(len(images))] if len(images) > 1 else images[0]
        )
        return self.transform(self.data.images[j]), int(self.data.labels[j])

    @property
    def most_images(self) -> int:
        """The most images one unit has."""
        return max((len(m) for m in self.members), default=0)


def check_private_model(model: nn.Module) -> None:
    """Refuse a model Opacus cannot train privately (BatchNorm, ...).

    Raises
    ------
    PrivacyError
        Naming the first offending layer.
    """
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise PrivacyError(
            f"this model cannot be trained with DP-SGD: {problems[0]} (run with "
            "dp = true so that BatchNorm models use their GroupNorm variant)"
        )


def train_dp_sgd(
    model: nn.Module,
    units: PrivacyUnits,
    plan: RoundPlan,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    device: torch.device,
    accountant: str,
    on_epoch: Callable[[EpochStats], None] | None = None,
    proximal_mu: float = 0.0,
) -> tuple[TrainResult, list[Mechanism]]:
    """Train ``model`` in place with Adam under Opacus' DP-SGD.

    Returns the training figures and the mechanisms Opacus' accountant recorded,
    which must equal the plan's. With ``proximal_mu`` > 0 each step adds
    FedProx's ``mu * (w - w_global)`` to the clipped, noised gradient,
    ``w_global`` being ``model`` as it is passed in. That term reads no image,
    so adding it after the noise is post-processing and costs no privacy.

    Raises
    ------
    PrivacyError
        If the model is not DP-compatible or Opacus took other steps than planned.
    """
    from opacus import PrivacyEngine

    check_private_model(model)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sampling = torch.Generator().manual_seed(secrets.randbits(63))
    noise = torch.Generator(device=device).manual_seed(secrets.randbits(63))
    loader = DataLoader(units, batch_size=batch_size, generator=sampling)
    result = TrainResult(num_examples=len(units.data), seconds=0.0)  # FedAvg weight
    proximal = _Proximal.around(model, proximal_mu) if proximal_mu > 0 else None
    start = time.perf_counter()
    with outputs_copied(model), warnings.catch_warnings():
        # Opacus warns that secure RNG needs torchcsprng (see docs/privacy.md) and
        # that its hooks fire on outputs when the images need no gradient
        warnings.simplefilter("ignore", UserWarning)
        engine = PrivacyEngine(accountant=accountant)
        private, dp_optimizer, dp_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=plan.mechanism.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise,
        )
        try:
            for _ in range(epochs):
                stats = _epoch(private, dp_optimizer, dp_loader, device, proximal)
                result.epochs.append(stats)
                if on_epoch is not None:
                    on_epoch(stats)
        finally:
            private.to_standard_module()  # removes Opacus' hooks; weights stay
    result.seconds = time.perf_counter() - start
    history = [Mechanism(s, q, n) for s, q, n in engine.accountant.history]
    if history != [plan.mechanism]:
        raise PrivacyError(
            f"DP-SGD took other steps than planned ({history} vs {plan.mechanism})"
        )
    return result, history


@dataclass(frozen=True)
class _Proximal:
    """FedProx's pull towards the weights the round started from."""

    mu: float
    anchors: list[tuple[nn.Parameter, torch.Tensor]]

    @classmethod
    def around(cls, model: nn.Module, mu: float) -> _Proximal:
        """The pull towards ``model``'s trainable parameters as they are now."""
        params = (p for p in model.parameters() if p.requires_grad)
        return cls(mu, [(p, p.detach().clone()) for p in params])

    def add_gradient(self) -> None:
        """Add ``mu * (w - w_global)`` to each parameter's (private) gradient."""
        for param, anchor in self.anchors:
            if param.grad is not None:
                param.grad.add_(param.detach() - anchor, alpha=self.mu)


def _epoch(
    private: nn.Module,
    optimizer: DPOptimizer,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    proximal: _Proximal | None = None,
) -> EpochStats:
    """One epoch of Poisson-sampled steps; each clips, adds noise and accounts."""
    criterion = nn.CrossEntropyLoss()
    private.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = private(images)
        loss = criterion(logits, labels)
        loss.backward()
        if proximal is None:
            optimizer.step()
        elif optimizer.pre_step():  # clipped, noised and accounted
            proximal.add_gradient()
            optimizer.original_optimizer.step()
        n = int(labels.shape[0])  # 0 on an empty Poisson batch: noise only
        if n:
            loss_sum += float(loss.detach()) * n
            correct += int((logits.detach().argmax(1) == labels).sum())
            seen += n
    return EpochStats(loss_sum / max(seen, 1), correct / max(seen, 1))


class _CopyOutput(nn.Module):
    """Runs a layer and returns a copy of its output, which may be changed in place."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output, copied."""
        out: torch.Tensor = self.layer(x)
        return out.clone()


@contextmanager
def outputs_copied(model: nn.Module) -> Iterator[None]:
    """Wrap each layer with weights in :class:`_CopyOutput` while inside.

    Opacus hooks every layer with weights; PyTorch forbids changing such a
    layer's output in place, which torchvision's ResNet (``out += identity``),
    DenseNet and in-place ReLUs do. The wrapped layers are the same objects, so
    the weights trained are the model's own; the wrappers go on exit.
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if any(True for _ in child.parameters(recurse=False)):
                swapped.append((parent, name, child))
                setattr(parent, name, _CopyOutput(child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
