"""``fedward audit``: privacy audits a hospital runs on its own data."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from fedward.cli.inference import AllowUnsigned, CaOption
from fedward.console import setup_logging

logger = logging.getLogger("fedward")

app = typer.Typer(help="Privacy audits a hospital runs on its own data.")


@app.command("membership")
def membership(
    model: Annotated[
        Path,
        typer.Argument(help="A run folder, export/ folder, model.pt or model file."),
    ],
    site: Annotated[
        Path,
        typer.Option(help="The site's site.toml or data folder (its own images)."),
    ],
    references: Annotated[
        int, typer.Option(help="Reference models for the LiRA attack (0: none).")
    ] = 4,
    reference_epochs: Annotated[
        int | None,
        typer.Option(help="Their epochs (default: the run's rounds x local epochs)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="JSON to write (default: <site>-membership-audit.json)."),
    ] = None,
    ca: CaOption = None,
    allow_unsigned: AllowUnsigned = False,
) -> None:
    """Membership-inference audit of a model on this site's own images.

    Runs a loss-threshold attack and an offline LiRA calibrated by reference
    models trained on half of the site's held-out images, and reports each
    attack's AUC and true-positive rate at 1 % false positives on the site's
    training images vs the other held-out half. Everything stays here: only the
    aggregate figures are written, to a local file.
    """
    setup_logging()
    from fedward.inference.audit import run_membership_audit

    report = run_membership_audit(
        model,
        site,
        references=references,
        reference_epochs=reference_epochs,
        ca=ca,
        allow_unsigned=allow_unsigned,
    )
    target = out or Path(f"{report['site']}-membership-audit.json")
    target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    typer.echo(
        f"{report['site']}: {report['members']} training images (members) vs "
        f"{report['non-members']} held-out images; model {report['model']}"
    )
    typer.echo(f"  {'attack':8s} {'AUC':>6s} {'TPR@1%FPR':>10s}")
    for attack in report["attacks"]:
        typer.echo(
            f"  {attack['attack']:8s} {attack['auc']:6.3f} "
            f"{attack['tpr-at-1pct-fpr']:10.3f}"
        )
    typer.echo(f"written to {target} (nothing was sent)")
