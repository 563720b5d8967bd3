"""Aggregation strategies by name: ``strategy = "fedadam"`` in the run config.

Every strategy is Flower 1.42's own (``flwr.serverapp.strategy``), composed once
with fedward's additions (:func:`~fedward.fl.strategies.base.compose`); this
module only maps run-config keys onto each one's constructor arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.serverapp.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
)

from fedward.config import FedwardConfig
from fedward.fl.recorder import RunRecorder
from fedward.fl.strategies.base import FedwardStrategy, compose
from fedward.fl.strategies.screening import Screen

Options = Callable[[FedwardConfig], dict[str, Any]]


def _fedopt(c: FedwardConfig) -> dict[str, Any]:
    # eta_l is only recorded by Flower's FedOpt; the hospitals use learning-rate
    return {
        "eta": c.fedopt_eta,
        "eta_l": c.learning_rate,
        "beta_1": c.fedopt_beta_1,
        "beta_2": c.fedopt_beta_2,
        "tau": c.fedopt_tau,
    }


STRATEGIES: dict[str, tuple[type[FedAvg], Options]] = {
    "fedavg": (FedAvg, lambda c: {}),
    "fedprox": (FedProx, lambda c: {"proximal_mu": c.proximal_mu}),
    "fedadam": (FedAdam, _fedopt),
    "fedyogi": (FedYogi, _fedopt),
    "fedadagrad": (
        FedAdagrad,
        lambda c: {"eta": c.fedopt_eta, "eta_l": c.learning_rate, "tau": c.fedopt_tau},
    ),
    "fedavgm": (
        FedAvgM,
        lambda c: {
            "server_learning_rate": c.server_learning_rate,
            "server_momentum": c.server_momentum,
        },
    ),
    "fedmedian": (FedMedian, lambda c: {}),
    "fedtrimmedavg": (FedTrimmedAvg, lambda c: {"beta": c.trimmed_beta}),
    "krum": (Krum, lambda c: {"num_malicious_nodes": c.num_malicious_nodes}),
    "multikrum": (
        MultiKrum,
        lambda c: {
            "num_malicious_nodes": c.num_malicious_nodes,
            "num_nodes_to_select": c.num_nodes_to_select,
        },
    ),
    "bulyan": (Bulyan, lambda c: {"num_malicious_nodes": c.num_malicious_nodes}),
}
# the strategies that aggregate a weighted sum of the updates (and so also work
# when the server sees only that sum); the others need each update
SUM_BASED = frozenset(
    {"fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm"}
)


def list_strategies() -> list[str]:
    """Names of every strategy, sorted."""
    return sorted(STRATEGIES)


def screen_of(config: FedwardConfig) -> Screen:
    """The update screening a run config asks for."""
    return Screen(config.update_norm_bound, config.update_min_cosine)


def make_strategy(config: FedwardConfig, recorder: RunRecorder) -> FedwardStrategy:
    """The run's strategy by name, with fedward's checks, metrics and recorder."""
    base, options = STRATEGIES[config.strategy]
    cls = compose(base)
    return cls(
        recorder=recorder,
        class_names=config.classes,
        screen=screen_of(config),
        fraction_train=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_train_nodes=config.min_train_nodes,
        min_evaluate_nodes=config.min_evaluate_nodes,
        min_available_nodes=config.min_available_nodes,
        **options(config),
    )
