"""Aggregation strategies, one file each."""

from fedward.server.strategy.fedavg import FedwardFedAvg

__all__ = ["FedwardFedAvg"]
