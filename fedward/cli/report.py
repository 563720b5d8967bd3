"""``fedward report``: the study report of a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedward.console import setup_logging


def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
) -> None:
    """Write report.html (self-contained) and report.md with plots and model card."""
    setup_logging()
    from fedward.reporting.study import write_report

    page, md = write_report(run_dir)
    typer.echo(f"{page}\n{md}")
