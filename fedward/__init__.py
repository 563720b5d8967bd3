"""fedward: federated learning for hospital imaging on Flower and PyTorch."""

__version__ = "0.1.0"
