"""The one ``fedward`` command, one module per command group.

User mistakes (a bad config, missing data) print one line per problem on stderr
and exit with the error's code; no traceback.
"""

from __future__ import annotations

import sys

import typer

from fedward.cli import (
    audit,
    certs,
    data,
    hospital,
    inference,
    report,
    server,
    simulate,
)
from fedward.errors import FedwardError

app = typer.Typer(
    help="Federated learning for hospital imaging on Flower and PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(simulate.simulate)
app.command("config")(simulate.config_cmd)
app.add_typer(data.app, name="data")
app.command()(inference.predict)
app.command()(inference.explain)
app.command("export")(inference.export_cmd)
app.command("models")(inference.models_cmd)
app.command()(report.report)
app.command()(server.server)
app.add_typer(hospital.app, name="hospital")
app.add_typer(certs.app, name="certs")
app.add_typer(audit.app, name="audit")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning fedward errors into one line each."""
    try:
        # without standalone mode click returns a command's exit code instead of
        # exiting with it
        result = app(args=argv, standalone_mode=False)
    except FedwardError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
