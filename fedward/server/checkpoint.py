"""Saving and loading global model weights with what is needed to use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fedward.common.config import FedwardConfig

MODEL_FILE = "model.pt"


def save_model(
    path: Path, state: dict[str, torch.Tensor], config: FedwardConfig, server_round: int
) -> None:
    """Write weights, model settings and class names to ``path`` (atomically)."""
    payload = {
        "state_dict": state,
        "model": config.model,
        "classes": config.classes,
        "in-channels": config.in_channels,
        "image-size": config.image_size,
        "round": server_round,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_model_file(path: Path) -> dict[str, Any]:
    """Read a file written by :func:`save_model`."""
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return payload
