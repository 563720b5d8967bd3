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


@app.command("privacy")
def privacy(config: SiteFile) -> None:
    """Print the privacy ledger: every private round, the ε spent and what is left."""
    from fedward.data.load import read_site
    from fedward.errors import PrivacyLedgerError
    from fedward.learning.ledger import PrivacyLedger
    from fedward.learning.privacy import lifetime

    site = read_site(config)
    if site.ledger_path is None:
        raise PrivacyLedgerError(f"{site.name}: no privacy-ledger in {config}")
    ledger = PrivacyLedger(site.ledger_path)
    entries = ledger.entries()
    typer.echo(f"{site.name}: privacy ledger {ledger.path} ({len(entries)} rounds)")
    if entries:
        typer.echo(
            f"  {'time':20s} {'run':>20s} {'round':>5s} {'ε round':>8s} "
            f"{'ε run':>7s} {'δ':>8s} {'noise':>6s} {'steps':>5s} {'rate':>6s} unit"
        )
    for e in entries:
        typer.echo(
            f"  {e.time:20s} {e.run[-20:]:>20s} {e.round:5d} {e.epsilon:8.3f} "
            f"{e.run_epsilon:7.3f} {e.delta:8.1e} {e.noise_multiplier:6.2f} "
            f"{e.steps:5d} {e.sample_rate:6.3f} {e.unit}"
        )
    spent, delta = lifetime(entries, site.dp_accountant)
    budget = site.privacy_budget
    typer.echo(
        f"lifetime ε {spent:.3f} at δ {delta:.1e} ({site.dp_accountant.upper()}); "
        + (
            f"budget {budget:g}, left {max(budget - spent, 0.0):.3f}"
            if budget > 0
            else "no budget set (privacy-budget in site.toml)"
        )
    )
