"""Aggregation strategies: Flower's, by name, with fedward's additions once."""

from fedward.fl.strategies.base import FedwardStrategy, StrategyState, compose
from fedward.fl.strategies.fedavg import FedwardFedAvg
from fedward.fl.strategies.registry import list_strategies, make_strategy
from fedward.fl.strategies.screening import Screen

__all__ = [
    "FedwardFedAvg",
    "FedwardStrategy",
    "Screen",
    "StrategyState",
    "compose",
    "list_strategies",
    "make_strategy",
]
