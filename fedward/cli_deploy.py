"""The deployment commands of ``fedward``: server, hospital, certs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

SiteFile = Annotated[Path, typer.Option("--config", help="The hospital's site.toml.")]


def register(app: typer.Typer, setup_logging: Callable[[], None]) -> None:
    """Add ``server``, ``hospital`` (and its approvals) and ``certs`` to ``fedward``."""
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

    hospital_app = typer.Typer(
        help="This hospital's daemon and the app code it approves.",
        invoke_without_command=True,
    )
    app.add_typer(hospital_app, name="hospital")

    @hospital_app.callback()
    def hospital(
        ctx: typer.Context,
        config: Annotated[
            Path | None, typer.Option(help="The hospital's site.toml.")
        ] = None,
    ) -> None:
        """Run this hospital's daemon (Flower SuperNode + fedward ClientApp)."""
        if ctx.invoked_subcommand is not None:
            return
        if config is None:
            raise typer.BadParameter(
                "--config site.toml is needed", param_hint="--config"
            )
        setup_logging()
        from fedward.client.daemon import run_hospital

        code = run_hospital(config)
        if code:
            raise typer.Exit(code)

    @hospital_app.command("approve")
    def approve(
        config: SiteFile,
        fab: Annotated[
            Path | None,
            typer.Option(help="App bundle to review (default: the fedward here)."),
        ] = None,
        yes: Annotated[
            bool, typer.Option("--yes", help="Approve without asking.")
        ] = False,
    ) -> None:
        """Show an app bundle and pin its hash: the only code this hospital runs."""
        from fedward.client.approval import record_approval
        from fedward.common.config import SiteConfig
        from fedward.common.fab import AppBundleError, AppSummary, build_app

        site = SiteConfig.from_site_file(config)
        installed: AppSummary | None = None
        if fab is None:
            bundle = installed = AppSummary.from_fab(build_app())
        else:
            bundle = AppSummary.from_fab(fab.read_bytes())
            with contextlib.suppress(AppBundleError):  # no source checkout here
                installed = AppSummary.from_fab(build_app())
        typer.echo("\n".join(bundle.describe(installed)))
        if not yes and not typer.confirm(f"Approve this app for {site.name}?"):
            raise typer.Exit(1)
        where = Path(site.approved_apps)
        new = record_approval(where, bundle)
        typer.echo(f"{'approved' if new else 'already approved'}: {where}")

    @hospital_app.command("approvals")
    def approvals(
        config: SiteFile,
        revoke: Annotated[
            str | None,
            typer.Option(help="Withdraw the approval with this hash prefix."),
        ] = None,
    ) -> None:
        """List the approved app hashes, or revoke one."""
        from fedward.client import approval
        from fedward.common.config import SiteConfig

        where = Path(SiteConfig.from_site_file(config).approved_apps)
        if revoke:
            for gone in approval.revoke(where, revoke):
                typer.echo(f"revoked {gone['sha256']}")
        for entry in approval.read_approvals(where):
            typer.echo(f"{entry['sha256']}  {entry.get('app')} {entry.get('version')} "
                       f"approved {entry.get('approved-at')}")  # fmt: skip

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
