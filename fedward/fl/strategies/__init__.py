"""Aggregation strategies, one file each."""

from fedward.fl.strategies.fedavg import FedwardFedAvg

__all__ = ["FedwardFedAvg"]
