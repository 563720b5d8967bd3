"""Grad-CAM heat maps of the global model, computed at the site that holds the images.

Uses captum's ``LayerGradCam`` on the model's last convolution (every registered
architecture has one) and writes overlays as PNG files.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from PIL import Image
from torch import nn

from fedward.errors import DataError, ModelError
from fedward.signing import Trust


def last_conv(model: nn.Module) -> nn.Conv2d:
    """The last ``Conv2d`` of a model: Grad-CAM's usual target layer.

    Raises
    ------
    ModelError
        If the model has no convolution.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ModelError("Grad-CAM needs a model with a convolution layer")
    return convs[-1]


def grad_cam(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Heat maps ``(N, H, W)`` in [0, 1] and the predicted class probabilities.

    ``targets`` defaults to each image's predicted class.
    """
    model = model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(images).float(), dim=1)
    if targets is None:
        targets = probs.argmax(1)
    cam = LayerGradCam(model, last_conv(model))
    attr = cam.attribute(images, target=targets, relu_attributions=True)
    up = LayerAttribution.interpolate(attr, tuple(images.shape[-2:]), "bilinear")
    maps = up.detach()[:, 0].clamp(min=0).numpy()
    peak = maps.reshape(len(maps), -1).max(1)[:, None, None]
    maps = np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
    return maps, probs.numpy()


def overlay(image: torch.Tensor, heat: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The image in grey with the heat map in the jet colour map on top."""
    from matplotlib import colormaps

    grey = image.float().mean(0).numpy()
    base = np.repeat(grey[..., None], 3, axis=2)
    colour = colormaps["jet"](heat)[..., :3]
    mixed = (1 - alpha * heat[..., None]) * base + alpha * heat[..., None] * colour
    return Image.fromarray((np.clip(mixed, 0, 1) * 255).astype(np.uint8))


def explain_files(
    model: nn.Module,
    files: list[Path],
    images: torch.Tensor,
    classes: list[str],
    out: Path,
) -> list[dict[str, str]]:
    """Write ``<name>.gradcam.png`` per image; return rows for a summary CSV."""
    out.mkdir(parents=True, exist_ok=True)
    maps, probs = grad_cam(model, images)
    rows = []
    for index, (path, image, heat, p) in enumerate(
        zip(files, images, maps, probs, strict=True)
    ):
        target = out / f"{index:04d}-{path.stem}.gradcam.png"
        overlay(image, heat).resize((256, 256), Image.Resampling.BILINEAR).save(target)
        rows.append(
            {
                "path": str(path),
                "prediction": classes[int(p.argmax())],
                "probability": f"{float(p.max()):.4f}",
                "overlay": str(target),
            }
        )
    return rows


def explain_paths(
    model_path: Path, paths: list[Path], out: Path, trust: Trust | None = None
) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """Grad-CAM for files and folders; write overlays and ``gradcam.csv``.

    Returns the rows written and the files skipped with their reasons.

    Raises
    ------
    ModelError
        If the model is ONNX or TorchScript (Grad-CAM needs the PyTorch weights).
    SignatureError
        If the weights are unsigned, changed or signed by a refused key.
    DataError
        If no file can be decoded.
    """
    from fedward.inference.export import Predictor, eager_weights
    from fedward.inference.predict import expand

    predictor = Predictor(eager_weights(model_path), trust)
    module = predictor.eager_model
    if module is None:
        raise ModelError("Grad-CAM needs model.pt or model.safetensors, not ONNX")
    files, tensors, skipped = [], [], []
    for path in expand(paths):
        try:
            tensors.append(predictor.load_image(path))
            files.append(path)
        except DataError as exc:
            skipped.append((str(path), exc.problems[0]))
    if not files:
        raise DataError("no image to explain")
    rows = explain_files(module, files, torch.cat(tensors), predictor.card.classes, out)
    with (out / "gradcam.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows, skipped
