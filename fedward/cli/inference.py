"""Using the global model at a site: predict, explain, export, list models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedward.console import setup_logging


def predict(
    model: Annotated[
        Path,
        typer.Argument(help="model.onnx, model.torchscript.pt, export/ or model.pt"),
    ],
    paths: Annotated[
        list[Path], typer.Argument(help="PNG/JPEG/DICOM files or folders.")
    ],
    out: Annotated[Path, typer.Option(help="CSV to write.")] = Path("predictions.csv"),
) -> None:
    """Class probabilities for images, as a CSV (one row per file)."""
    setup_logging()
    from fedward.inference.export import Predictor
    from fedward.inference.predict import predict_files

    predictor = Predictor(model)
    done, failed = predict_files(predictor, paths, out)
    typer.echo(f"{done} predicted, {failed} unreadable; written to {out}")


def explain(
    model: Annotated[Path, typer.Option(help="Run folder, model.pt or .safetensors.")],
    images: Annotated[list[Path], typer.Argument(help="Image/DICOM files or folders.")],
    out: Annotated[Path, typer.Option(help="Folder for overlays.")] = Path("gradcam"),
) -> None:
    """Grad-CAM overlays of the global model, computed here, on this site's images."""
    setup_logging()
    from fedward.inference.explain import explain_paths

    rows, skipped = explain_paths(model, images, out)
    for path, reason in skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    typer.echo(f"{len(rows)} overlays written to {out} (gradcam.csv lists them)")


def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A run folder's model.pt.")],
    out: Annotated[Path, typer.Option(help="Folder to write.")] = Path("export"),
) -> None:
    """Export a checkpoint as TorchScript, ONNX and safetensors with model.json."""
    setup_logging()
    from fedward.inference.export import export_model
    from fedward.models.checkpoint import load_checkpoint

    for kind, path in export_model(*load_checkpoint(checkpoint), out).items():
        typer.echo(f"{kind:12s} {path}")


def models_cmd() -> None:
    """List the registered model names."""
    from fedward.models import list_models

    for name in list_models():
        typer.echo(name)
