"""Checkpoints: weights saved with the model card that says how to rebuild them.

A run folder's ``model.pt`` holds the global weights with the model name, class
names, input size and round (:class:`ModelCard`); every export and every tool that
loads weights (predict, explain, export) starts from such a card.
:func:`model_files` gives the two files that make a usable model anywhere,
``model.json`` (the card) and ``model.safetensors`` (the weights).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedward.config import FedwardConfig
from fedward.models import get_model
from fedward.models.groupnorm import run_model_name
from fedward.runfolder import RunFolder


@dataclass(frozen=True)
class ModelCard:
    """What is needed to use exported weights: architecture and preprocessing."""

    model: str
    classes: list[str]
    in_channels: int
    image_size: int
    server_round: int = 0
    # the standard intensity scale images are mapped onto before the model sees
    # them (harmonize = "histogram"; empty: none), fedward.data.harmonize
    harmonize_scale: list[float] = dataclasses.field(default_factory=list)
    # normalisation layers were kept at each hospital (local-norm): these weights
    # carry the initial ones; a hospital predicts with its own
    local_norm: bool = False

    def build(self, state: Mapping[str, torch.Tensor]) -> nn.Module:
        """The model with ``state`` loaded, in eval mode on the CPU."""
        model = get_model(
            self.model,
            num_classes=len(self.classes),
            in_channels=self.in_channels,
            image_size=self.image_size,
        )
        model.load_state_dict(dict(state))
        return model.eval()

    def meta(self) -> dict[str, Any]:
        """What ``model.json`` (and a signed manifest's card) holds."""
        return {
            **_set_fields(self),
            "input": "float32 (N, C, H, W) in [0, 1]",
            "output": "logits",
        }

    @classmethod
    def of_run(
        cls,
        config: FedwardConfig,
        server_round: int,
        harmonize_scale: Sequence[float] = (),
    ) -> ModelCard:
        """The card of a run's global model after ``server_round``."""
        return cls(
            run_model_name(config),
            config.classes,
            config.in_channels,
            config.image_size,
            server_round,
            list(harmonize_scale),
            config.norm_stays_local,
        )

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ModelCard:
        """From an export folder's ``model.json``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in names})

    @classmethod
    def from_checkpoint(cls, payload: Mapping[str, Any]) -> ModelCard:
        """From a run folder's ``model.pt``."""
        return cls(
            str(payload["model"]),
            list(payload["classes"]),
            int(payload["in-channels"]),
            int(payload["image-size"]),
            int(payload.get("round", 0)),
            [float(v) for v in payload.get("harmonize-scale", [])],
            bool(payload.get("local-norm", False)),
        )


def _set_fields(card: ModelCard) -> dict[str, Any]:
    """The card's fields, leaving out the optional ones that are not set."""
    fields = dataclasses.asdict(card)
    for name in ("harmonize_scale", "local_norm"):
        if not fields[name]:
            del fields[name]
    return fields


def save_checkpoint(
    path: Path, card: ModelCard, state: Mapping[str, torch.Tensor]
) -> None:
    """Write weights with their model card to ``path`` (atomically)."""
    payload = {
        "state_dict": dict(state),
        "model": card.model,
        "classes": card.classes,
        "in-channels": card.in_channels,
        "image-size": card.image_size,
        "round": card.server_round,
    }
    if card.harmonize_scale:
        payload["harmonize-scale"] = list(card.harmonize_scale)
    if card.local_norm:
        payload["local-norm"] = True
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """The card and weights of a file written by :func:`save_checkpoint`."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return ModelCard.from_checkpoint(payload), dict(payload["state_dict"])


def model_files(card: ModelCard, state: Mapping[str, torch.Tensor]) -> dict[str, bytes]:
    """``model.json`` and ``model.safetensors`` as bytes, by file name."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return {
        RunFolder.MODEL_META: (json.dumps(card.meta(), indent=2) + "\n").encode(),
        RunFolder.MODEL_WEIGHTS: save(tensors),
    }
