"""Site-local normalisation (FedBN): which weights stay at the hospital.

With ``local-norm`` the parameters and running statistics of every
normalisation layer (batch, instance, group and layer norm) never leave the
hospital: they are left out of every weight record it sends and receives, kept
in a file of its own between rounds and restarts, and used when it evaluates
and predicts. No Flower import.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fedward.errors import WeightsError

logger = logging.getLogger(__name__)

NORM_LAYERS = (
    nn.modules.batchnorm._NormBase,  # batch and instance norm
    nn.GroupNorm,
    nn.LayerNorm,
)


def norm_keys(model: nn.Module) -> frozenset[str]:
    """State-dict keys of every normalisation layer's parameters and buffers."""
    keys: set[str] = set()
    for prefix, module in model.named_modules():
        if isinstance(module, NORM_LAYERS):
            own = module.state_dict()
            keys.update(f"{prefix}.{k}" if prefix else k for k in own)
    return frozenset(keys)


def norm_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The normalisation layers' tensors (copied to the CPU)."""
    keys = norm_keys(model)
    return {
        k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k in keys
    }


def save_norm_state(model: nn.Module, path: Path) -> None:
    """Write the model's normalisation tensors to ``path`` (safetensors, atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in norm_state(model).items()}, str(tmp))
    tmp.replace(path)


def load_norm_state(model: nn.Module, path: Path) -> bool:
    """Load normalisation tensors saved by :func:`save_norm_state`, if any.

    Returns whether a file was there.

    Raises
    ------
    WeightsError
        If the file holds other keys than the model's normalisation layers: a
        state saved for another architecture is not silently half-used.
    """
    if not path.is_file():
        return False
    saved = load_file(str(path))
    keys = norm_keys(model)
    if set(saved) != keys:
        raise WeightsError(
            f"{path.name} holds normalisation state of another model "
            f"({len(saved)} tensors, the model has {len(keys)})"
        )
    model.load_state_dict(saved, strict=False)
    return True
