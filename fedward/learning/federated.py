"""What federated training adds to a hospital's local training (no Flower import).

- :class:`ProximalTerm`: FedProx's ``mu/2 * ||w - w_global||^2`` (squared, as in
  Li et al. 2020; Flower's FedProx docstring example uses the unsquared norm);
- :func:`round_learning_rate`: the local learning rate of each round
  (``lr-schedule``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

COSINE_FLOOR = 0.1  # the cosine schedule ends at a tenth of the learning rate


class ProximalTerm:
    """``mu/2 * ||w - w_global||^2`` over a model's trainable parameters.

    Parameters
    ----------
    model
        The model as it arrived from the server: its parameters now are
        ``w_global`` (copied, so later training does not move them).
    mu
        The proximal weight (FedProx's ``proximal-mu``).
    """

    def __init__(self, model: nn.Module, mu: float) -> None:
        self.mu = mu
        self.reference = {
            name: p.detach().clone()
            for name, p in model.named_parameters()
            if p.requires_grad
        }

    def __call__(self, model: nn.Module) -> torch.Tensor:
        """The term for the model's current parameters (differentiable)."""
        total = torch.zeros((), device=next(model.parameters()).device)
        for name, p in model.named_parameters():
            ref = self.reference.get(name)
            if ref is None:
                continue
            if ref.device != p.device:  # moved once, with the model
                ref = self.reference[name] = ref.to(p.device)
            total = total + (p - ref).pow(2).sum()
        return 0.5 * self.mu * total


def round_learning_rate(
    learning_rate: float, schedule: str, server_round: int, num_rounds: int
) -> float:
    """The local learning rate of ``server_round`` (1-based) of ``num_rounds``.

    ``constant`` keeps ``learning_rate``; ``cosine`` follows half a cosine from
    ``learning_rate`` in round 1 to a tenth of it in the last round (rounds past
    the last, such as personalisation, keep the last round's rate).
    """
    if schedule == "constant" or num_rounds <= 1:
        return learning_rate
    progress = min(max(server_round - 1, 0) / (num_rounds - 1), 1.0)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    factor = COSINE_FLOOR + (1 - COSINE_FLOOR) * cosine
    return learning_rate * factor
