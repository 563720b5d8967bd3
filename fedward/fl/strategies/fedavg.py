"""FedAvg with fedward's update checks, exact metrics and run recorder."""

from fedward.fl.strategies.base import FedwardStrategy, weighted_mean


class FedwardFedAvg(FedwardStrategy):
    """Flower's FedAvg plus update checks, exact metrics and a run folder."""


__all__ = ["FedwardFedAvg", "weighted_mean"]
