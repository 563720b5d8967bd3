"""``fedward server``: the aggregation server of a deployed federation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from fedward.console import setup_logging


def server(
    config: Annotated[Path, typer.Option(help="server.toml (see deploy/).")],
    run_dir: Annotated[
        Path | None, typer.Option(help="Where to write the run.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this folder after its last complete round "
            "(checked against the server's signature first)."
        ),
    ] = None,
) -> None:
    """Run the aggregation server: a TLS SuperLink and one federation."""
    setup_logging()
    from fedward.config import ServerConfig
    from fedward.deployment.server import check_resume, run_server, signing_environment
    from fedward.errors import ConfigError
    from fedward.reporting.finish import finish_run
    from fedward.runfolder import RunFolder

    settings, run = ServerConfig.from_server_file(config)
    # this process and the ServerApp the SuperLink starts sign with the
    # consortium's model-signing key (RunFolder.signer reads these)
    os.environ.update(signing_environment(settings))
    if resume is not None and run_dir is not None and run_dir != resume:
        raise ConfigError("--resume names the run folder; drop --run-dir")
    target = (resume or run_dir or Path(run.run_dir)).resolve()
    run = run.replace(run_dir=str(target), resume=resume is not None)
    if resume is not None:
        check_resume(run)
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    run_config = state / "run-config.toml"
    run_config.write_text(
        "\n".join(f"{k} = {json.dumps(v)}" for k, v in run.to_run_config().items())
        + "\n"
    )
    code = run_server(settings, run, run_config)
    if code:
        raise typer.Exit(code)
    finish_run(RunFolder(target))
    typer.echo(f"Run folder: {target}")
