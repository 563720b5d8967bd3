"""The global model as files a hospital can deploy: TorchScript, ONNX, safetensors.

Every export folder holds ``model.json`` (model name, class names, input size and
channels, scaling) beside ``model.safetensors``, ``model.torchscript.pt`` and
``model.onnx``, and ``manifest.json`` signing all four; :class:`Predictor`
verifies and loads any of them and gives class probabilities for image or DICOM
files, preprocessed as in training.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedward.data.decode import Preprocess, decode_file
from fedward.data.harmonize import harmonize_images
from fedward.errors import ModelError
from fedward.models.checkpoint import ModelCard, load_checkpoint, model_files
from fedward.runfolder import RunFolder
from fedward.signing import Signer, Trust, verify_folder

logger = logging.getLogger(__name__)

META_FILE = RunFolder.MODEL_META
WEIGHTS_FILE = RunFolder.MODEL_WEIGHTS
TORCHSCRIPT_FILE = RunFolder.MODEL_TORCHSCRIPT
ONNX_FILE = RunFolder.MODEL_ONNX


def export_model(
    card: ModelCard,
    state: Mapping[str, torch.Tensor],
    out: Path,
    *,
    signer: Signer,
) -> dict[str, Path]:
    """Write the four export files and their signed manifest; return them by kind."""
    out.mkdir(parents=True, exist_ok=True)
    model = card.build(state)
    example = torch.zeros(1, card.in_channels, card.image_size, card.image_size)
    files = {
        "meta": out / META_FILE,
        "safetensors": out / WEIGHTS_FILE,
        "torchscript": out / TORCHSCRIPT_FILE,
        "onnx": out / ONNX_FILE,
    }
    for name, data in model_files(card, model.state_dict()).items():
        (out / name).write_bytes(data)
    # torch deprecates tracing and the TorchScript-based ONNX exporter in favour of
    # torch.export; both still produce the files deployments load today
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
        traced.save(str(files["torchscript"]))
        torch.onnx.export(
            model,
            (example,),
            str(files["onnx"]),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    files["manifest"] = signer.sign_folder(
        out, [p.name for p in files.values()], card.meta()
    )
    logger.info("exported the model to %s (signed by a %s key)", out, signer.kind)
    return files


def eager_weights(path: Path) -> Path:
    """In a run or export folder, the weights file PyTorch loads directly."""
    if path.is_dir():
        for candidate in (
            path / RunFolder.CHECKPOINT,
            path / WEIGHTS_FILE,
            path / RunFolder.EXPORT / WEIGHTS_FILE,
        ):
            if candidate.is_file():
                return candidate
    return path


def model_file(path: Path) -> Path:
    """The model file a path names: itself, or the best one in a folder.

    ``path`` may be an export folder, a file in one, or a run folder's
    ``model.pt`` (or the run folder itself).

    Raises
    ------
    ModelError
        If no model file is found.
    """
    if path.is_dir():
        for candidate in (
            path / ONNX_FILE,
            path / RunFolder.EXPORT / ONNX_FILE,
            path / WEIGHTS_FILE,
            path / RunFolder.CHECKPOINT,
        ):
            if candidate.is_file():
                return candidate
        raise ModelError(
            f"{path}: no model.onnx, export/, model.safetensors or model.pt inside"
        )
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    return path


def load_card(path: Path, trust: Trust) -> tuple[ModelCard, Path]:
    """The model card of a model file or folder, and the model file, both verified.

    The model file and the card it is used with (``model.json``, or the card
    inside ``model.pt``) must be listed in the folder's signed ``manifest.json``
    (:mod:`fedward.signing`) with the digests they have now.

    Raises
    ------
    ModelError
        If no model card or model file is found.
    SignatureError
        If the files are unsigned (and ``trust`` does not allow it), changed, or
        signed by a key ``trust`` does not accept.
    """
    path = model_file(path)
    if path.name == RunFolder.CHECKPOINT:
        verify_folder(path.parent, [path.name], trust)
        return load_checkpoint(path)[0], path
    meta = path.parent / META_FILE
    if not meta.is_file():
        raise ModelError(f"{path}: no {META_FILE} beside it")
    verify_folder(path.parent, [path.name, META_FILE], trust)
    return ModelCard.from_meta(json.loads(meta.read_text(encoding="utf-8"))), path


class Predictor:
    """Class probabilities from any exported or checkpointed model.

    ``.onnx`` runs in ONNX Runtime, ``.torchscript.pt`` in TorchScript,
    ``.safetensors`` and ``model.pt`` in PyTorch. The files are verified
    against their signed manifest first (:func:`load_card`). Images are mapped
    onto the model's harmonisation scale, if it has one.

    ``site_state``, a hospital's own tensors (``local-norm.safetensors``, its
    normalisation layers; ``personalized.safetensors``, its fine-tuned weights),
    replaces those of the global model; PyTorch weights files only.
    """

    def __init__(
        self, path: Path, trust: Trust | None = None, site_state: Path | None = None
    ) -> None:
        self.card, self.path = load_card(path, trust or Trust())
        self._onnx: Any = None
        self._torch: Any = None
        if self.path.suffix == ".onnx":
            import onnxruntime

            self._onnx = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"]
            )
        elif self.path.name.endswith(".torchscript.pt"):
            scripted = torch.jit.load(str(self.path), map_location="cpu")  # type: ignore[no-untyped-call]
            self._torch = scripted.eval()
        elif self.path.suffix == ".safetensors":
            from safetensors.torch import load_file

            self._torch = self.card.build(load_file(str(self.path)))
        else:
            self._torch = self.card.build(load_checkpoint(self.path)[1])
        if site_state is not None:
            self._overlay(site_state)
        elif self.card.local_norm:
            logger.warning(
                "this model kept normalisation layers at each hospital; without "
                "a hospital's own state (--site-state) it predicts with the "
                "initial ones"
            )

    def _overlay(self, site_state: Path) -> None:
        """Put a hospital's own tensors over the global weights."""
        from safetensors.torch import load_file

        model = self.eager_model
        if model is None:
            raise ModelError(
                "a hospital's own state goes with model.pt or model.safetensors, "
                f"not {self.path.name}"
            )
        try:
            state = load_file(str(site_state))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {site_state}: {exc}") from None
        unknown = sorted(set(state) - set(model.state_dict()))
        if unknown:
            raise ModelError(
                f"{site_state.name} holds tensors the model lacks: {unknown[:5]}"
            )
        model.load_state_dict(state, strict=False)

    @property
    def eager_model(self) -> nn.Module | None:
        """The PyTorch module (weights files), or None for ONNX and TorchScript."""
        if isinstance(self._torch, nn.Module) and not isinstance(
            self._torch, torch.jit.ScriptModule
        ):
            return self._torch
        return None

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """Softmax probabilities ``(N, K)`` of float images in [0, 1]."""
        if self._onnx is not None:
            logits = self._onnx.run(None, {"image": images.numpy()})[0]
            logits = torch.from_numpy(logits)
        else:
            with torch.no_grad():
                logits = self._torch(images)
        probs: np.ndarray = torch.softmax(logits.float(), dim=1).numpy()
        return probs

    def load_image(self, path: Path) -> torch.Tensor:
        """One file decoded and scaled as in training, ``(1, C, H, W)``."""
        card = self.card
        pixels = decode_file(path, Preprocess(card.in_channels, card.image_size))
        if card.harmonize_scale:
            pixels = harmonize_images(pixels, card.harmonize_scale)
        return (pixels.float() / 255.0)[None]
