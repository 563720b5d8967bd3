"""The deployment commands of ``fedward``: server, hospital, certs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, setup_logging: Callable[[], None]) -> None:
    """Add ``server``, ``hospital`` and ``certs`` to the ``fedward`` command."""
    certs_app = typer.Typer(
        help="Consortium keys: CA, server, hospitals.", no_args_is_help=True
    )
    app.add_typer(certs_app, name="certs")

    @app.command()
    def server(
        config: Annotated[Path, typer.Option(help="server.toml (see deploy/).")],
        run_dir: Annotated[
            Path | None, typer.Option(help="Where to write the run.")
        ] = None,
    ) -> None:
        """Run the aggregation server: a TLS SuperLink and one federation."""
        setup_logging()
        import dataclasses

        from fedward.common.config import ServerConfig
        from fedward.server.deployment import run_server

        settings, run = ServerConfig.from_server_file(config)
        target = (run_dir or Path(run.run_dir)).resolve()
        run = dataclasses.replace(run, run_dir=str(target))
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
        typer.echo(f"Run folder: {target}")

    @app.command()
    def hospital(
        config: Annotated[Path, typer.Option(help="The hospital's site.toml.")],
    ) -> None:
        """Run this hospital's daemon (Flower SuperNode + fedward ClientApp)."""
        setup_logging()
        from fedward.client.daemon import run_hospital

        code = run_hospital(config)
        if code:
            raise typer.Exit(code)

    @certs_app.command("init")
    def certs_init(
        out: Annotated[
            Path, typer.Option(help="Folder for the consortium's keys.")
        ] = Path("certs"),
        server_name: Annotated[
            list[str] | None, typer.Option(help="Server DNS name or IP (repeat).")
        ] = None,
        hospital: Annotated[
            list[str] | None, typer.Option(help="Enrol a hospital.")
        ] = None,
    ) -> None:
        """Make the consortium CA, the server certificate and hospital node keys."""
        from fedward.common.certs import make_ca, make_hospital_key, make_server_cert

        # the server registers hospital keys over its own loopback, so the
        # certificate always names it too
        names = list(dict.fromkeys([*(server_name or []), "localhost", "127.0.0.1"]))
        typer.echo(f"CA: {make_ca(out)[0]}")
        typer.echo(f"server: {make_server_cert(out, names)[0]} for {', '.join(names)}")
        for name in hospital or []:
            typer.echo(f"hospital {name}: {make_hospital_key(out, name)[0]}")

    @certs_app.command("hospital")
    def certs_hospital(
        name: Annotated[str, typer.Argument(help="The hospital's short name.")],
        out: Annotated[Path, typer.Option(help="The consortium's keys folder.")] = Path(
            "certs"
        ),
    ) -> None:
        """Enrol one more hospital: a node key pair whose .pub the server accepts."""
        from fedward.common.certs import make_hospital_key

        key, pub = make_hospital_key(out, name)
        typer.echo(
            f"give {key} to {name}; {pub} is registered at the next server start"
        )
