"""``fedward hospital``: this hospital's daemon and the app code it approves."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer

from fedward.console import setup_logging

SiteFile = Annotated[Path, typer.Option("--config", help="The hospital's site.toml.")]

app = typer.Typer(
    help="This hospital's daemon and the app code it approves.",
    invoke_without_command=True,
)


@app.callback()
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
        raise typer.BadParameter("--config site.toml is needed", param_hint="--config")
    setup_logging()
    from fedward.deployment.hospital import run_hospital

    code = run_hospital(config)
    if code:
        raise typer.Exit(code)


@app.command("approve")
def approve(
    config: SiteFile,
    fab: Annotated[
        Path | None,
        typer.Option(help="App bundle to review (default: the fedward here)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Approve without asking.")] = False,
) -> None:
    """Show an app bundle and pin its hash: the only code this hospital runs."""
    from fedward.data.load import read_site
    from fedward.deployment.approvals import record_approval
    from fedward.deployment.bundle import AppBundleError, AppSummary, build_app

    site = read_site(config)
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


@app.command("approvals")
def approvals(
    config: SiteFile,
    revoke: Annotated[
        str | None,
        typer.Option(help="Withdraw the approval with this hash prefix."),
    ] = None,
) -> None:
    """List the approved app hashes, or revoke one."""
    from fedward.data.load import read_site
    from fedward.deployment import approvals as approval

    where = Path(read_site(config).approved_apps)
    if revoke:
        for gone in approval.revoke(where, revoke):
            typer.echo(f"revoked {gone['sha256']}")
    for entry in approval.read_approvals(where):
        typer.echo(
            f"{entry['sha256']}  {entry.get('app')} {entry.get('version')} "
            f"approved {entry.get('approved-at')}"
        )
