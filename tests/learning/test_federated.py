"""FedProx's proximal term and the round learning-rate schedule, in plain torch."""

import itertools
import math

import pytest
import torch
from torch import nn

from fedward.learning.federated import ProximalTerm, round_learning_rate
from fedward.learning.loops import train


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2))


def batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {"image": torch.rand(8, 3, 2, 2), "label": torch.randint(0, 2, (8,))}


def gradients(model: nn.Module, term: ProximalTerm | None) -> list[torch.Tensor]:
    model.zero_grad()
    data = batch()
    loss = nn.functional.cross_entropy(model(data["image"]), data["label"])
    if term is not None:
        loss = loss + term(model)
    loss.backward()  # type: ignore[no-untyped-call]
    return [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]


def test_the_proximal_term_is_half_mu_times_the_squared_distance() -> None:
    model = tiny_model()
    term = ProximalTerm(model, mu=0.4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # every weight 0.5 away from w_global
    n = sum(p.numel() for p in model.parameters())

    value = term(model).detach()

    assert float(value) == pytest.approx(0.4 / 2 * n * 0.25, rel=1e-5)  # squared
    assert float(value) != pytest.approx(0.4 / 2 * math.sqrt(n * 0.25))  # not the norm


def test_the_proximal_term_adds_mu_times_the_distance_to_each_gradient() -> None:
    model = tiny_model()
    term = ProximalTerm(model, mu=0.3)
    global_weights = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)

    plain = gradients(model, None)
    prox = gradients(model, term)

    for g_plain, g_prox, p, w in zip(
        plain, prox, model.parameters(), global_weights, strict=True
    ):
        assert torch.allclose(g_prox - g_plain, 0.3 * (p.detach() - w), atol=1e-6)


def test_local_training_with_mu_stays_closer_to_the_global_weights() -> None:
    def distance_after(mu: float) -> float:
        model = tiny_model()
        start = [p.detach().clone() for p in model.parameters()]
        term = ProximalTerm(model, mu) if mu else None
        train(
            model,
            [batch()] * 20,
            epochs=2,
            learning_rate=0.05,
            device=torch.device("cpu"),
            num_classes=2,
            channels_last=False,
            regularizer=term,
        )
        return sum(
            float((p.detach() - s).pow(2).sum())
            for p, s in zip(model.parameters(), start, strict=True)
        )

    assert distance_after(5.0) < 0.5 * distance_after(0.0)


def test_the_cosine_schedule_falls_from_the_rate_to_a_tenth() -> None:
    rates = [round_learning_rate(1e-3, "cosine", r, 5) for r in range(1, 7)]

    assert rates[0] == pytest.approx(1e-3)
    assert rates[4] == pytest.approx(1e-4)
    assert rates[5] == pytest.approx(1e-4)  # personalisation keeps the last rate
    assert all(a > b for a, b in itertools.pairwise(rates[:5]))
    assert round_learning_rate(1e-3, "constant", 4, 5) == 1e-3
