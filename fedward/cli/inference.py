"""Using the global model at a site: predict, explain, export, list models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedward.console import setup_logging
from fedward.signing import Signer, Trust

CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        help="Consortium CA (ca.crt): the model must be signed by a certificate "
        "it issued.",
    ),
]
AllowUnsigned = Annotated[
    bool,
    typer.Option(
        "--allow-unsigned",
        help="Use a model without a signed manifest.json (with a warning).",
    ),
]


def _trust(ca: Path | None, allow_unsigned: bool) -> Trust:
    return Trust.from_ca_file(ca, allow_unsigned=allow_unsigned)


def predict(
    model: Annotated[
        Path,
        typer.Argument(help="model.onnx, model.torchscript.pt, export/ or model.pt"),
    ],
    paths: Annotated[
        list[Path], typer.Argument(help="PNG/JPEG/DICOM files or folders.")
    ],
    out: Annotated[Path, typer.Option(help="CSV to write.")] = Path("predictions.csv"),
    ca: CaOption = None,
    allow_unsigned: AllowUnsigned = False,
    site_state: Annotated[
        Path | None,
        typer.Option(
            help="This hospital's own tensors over the global model: "
            "local-norm.safetensors (local-norm) or personalized.safetensors."
        ),
    ] = None,
) -> None:
    """Class probabilities for images, as a CSV (one row per file).

    The model files are checked against their signed manifest.json first.
    """
    setup_logging()
    from fedward.inference.export import Predictor
    from fedward.inference.predict import predict_files

    predictor = Predictor(model, _trust(ca, allow_unsigned), site_state)
    done, failed = predict_files(predictor, paths, out)
    typer.echo(f"{done} predicted, {failed} unreadable; written to {out}")


def explain(
    model: Annotated[Path, typer.Option(help="Run folder, model.pt or .safetensors.")],
    images: Annotated[list[Path], typer.Argument(help="Image/DICOM files or folders.")],
    out: Annotated[Path, typer.Option(help="Folder for overlays.")] = Path("gradcam"),
    ca: CaOption = None,
    allow_unsigned: AllowUnsigned = False,
) -> None:
    """Grad-CAM overlays of the global model, computed here, on this site's images."""
    setup_logging()
    from fedward.inference.explain import explain_paths

    rows, skipped = explain_paths(model, images, out, _trust(ca, allow_unsigned))
    for path, reason in skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    typer.echo(f"{len(rows)} overlays written to {out} (gradcam.csv lists them)")


def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A run folder's model.pt.")],
    out: Annotated[Path, typer.Option(help="Folder to write.")] = Path("export"),
    ca: CaOption = None,
    allow_unsigned: AllowUnsigned = False,
    signing_cert: Annotated[
        Path | None,
        typer.Option(help="Sign the export with this certificate (and --signing-key)."),
    ] = None,
    signing_key: Annotated[
        Path | None, typer.Option(help="The private key of --signing-cert.")
    ] = None,
) -> None:
    """Export a checkpoint as TorchScript, ONNX and safetensors with model.json.

    The checkpoint is checked against its signed manifest.json; the export gets
    its own, signed with --signing-cert/--signing-key or else a one-off key
    (which proves only that the files are unchanged since the export).
    """
    setup_logging()
    from fedward.errors import ConfigError
    from fedward.inference.export import export_model, load_card
    from fedward.models.checkpoint import load_checkpoint

    if (signing_cert is None) != (signing_key is None):
        raise ConfigError("--signing-cert and --signing-key go together")
    signer = (
        Signer.from_files(signing_cert, signing_key)
        if signing_cert is not None and signing_key is not None
        else Signer.ephemeral()
    )
    from fedward.runfolder import RunFolder

    if checkpoint.is_dir():
        checkpoint = checkpoint / RunFolder.CHECKPOINT
    _, path = load_card(checkpoint, _trust(ca, allow_unsigned))
    card, state = load_checkpoint(path)
    for kind, written in export_model(card, state, out, signer=signer).items():
        typer.echo(f"{kind:12s} {written}")


def models_cmd() -> None:
    """List the registered model names."""
    from fedward.models import list_models

    for name in list_models():
        typer.echo(name)
