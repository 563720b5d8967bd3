"""``fedward simulate`` and ``fedward config``: a federation on this machine."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from fedward.cli.options import build_config
from fedward.console import setup_logging
from fedward.errors import ConfigError
from fedward.runfolder import RunFolder

logger = logging.getLogger("fedward")


def simulate(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario TOML file (see simulations/).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your own data: one folder per hospital, class folders inside."
        ),
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Federated rounds.")] = None,
    local_epochs: Annotated[
        int | None, typer.Option(help="Local epochs per round.")
    ] = None,
    hospitals: Annotated[
        int | None, typer.Option(help="Demo hospitals (or partitions of pooled data).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name (fedward models).")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where to write the run.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any config key, e.g. --set batch-size=16."),
    ] = None,
    baselines: Annotated[
        bool,
        typer.Option(help="Also train each hospital alone and all data pooled."),
    ] = False,
    attack: Annotated[
        list[str] | None,
        typer.Option(
            help="A misbehaving hospital, site:kind[:factor] (kinds: sign-flip, "
            "scale, gaussian-noise, nan, label-flip); as [[attack]] in a scenario."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="Also show Flower's own log.")] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this folder after its last complete round, "
            "with its own settings."
        ),
    ] = None,
) -> None:
    """Run a multi-hospital federation on this machine (demo data by default)."""
    setup_logging(verbose)
    from fedward.simulation import runner
    from fedward.simulation.attacks import parse_attack, read_attacks

    options = {
        "num-server-rounds": rounds,
        "local-epochs": local_epochs,
        "num-hospitals": hospitals,
        "model": model,
        "data-root": str(data) if data else None,
        "run-dir": str(run_dir) if run_dir else None,
    }
    if resume is not None:
        given = [k for k, v in options.items() if v is not None]
        given += ["scenario"] * bool(scenario) + ["--set"] * bool(set_)
        given += ["--attack"] * bool(attack)
        if given:
            raise ConfigError(
                f"--resume continues with the run's own settings; drop {given}"
            )
        config = runner.prepare(runner.resume_config(resume))
        attacks = runner.saved_attacks(config)
    else:
        config = build_config(scenario, options, set_ or [])
        attacks = read_attacks(scenario) + [parse_attack(a) for a in attack or []]
        name = scenario.stem if scenario else "simulation"
        config = runner.prepare(config, scenario=name)
    logger.info(
        "federation: %d hospitals, %d rounds, model %s, data %s, run folder %s",
        config.num_hospitals,
        config.num_server_rounds,
        config.model,
        config.data_root,
        config.run_dir,
    )
    summary = runner.run(config, attacks)
    _print_summary(summary)
    local_only = None
    if baselines:
        from fedward.simulation import baselines as base

        figures = base.run_baselines(config)
        rows = base.compare(summary, figures)
        base.write_baselines(RunFolder(config.run_dir), figures, rows)
        _print_baselines(rows, figures["budget-epochs"])
        local_only = figures["local-only"]
    if summary.get("personalization"):
        _print_personalization(summary["personalization"], local_only)
    typer.echo(f"Run folder: {config.run_dir}")


def _print_personalization(
    figures: dict[str, Any], local_only: dict[str, Any] | None
) -> None:
    typer.echo(
        "\nPersonalised (fine-tuned at each hospital), same held-out images, f1:"
    )
    typer.echo(f"  {'':26s} {'global':>8s} {'personal':>9s} {'local-only':>11s}")
    rows = [("global (pooled counts)", figures["global"])]
    rows += sorted(figures["sites"].items())
    for name, row in rows:
        alone = "-"
        if local_only is not None:
            block = (
                local_only["global"]
                if name.startswith("global")
                else local_only["sites"].get(name)
            )
            alone = f"{block['f1']:.3f}" if block else "-"
        typer.echo(
            f"  {name:26s} {row['global']['f1']:8.3f} "
            f"{row['personalized']['f1']:9.3f} {alone:>11s}"
        )


def _print_baselines(rows: dict[str, Any], epochs: int) -> None:
    typer.echo(f"\nSame budget ({epochs} epochs), same held-out images:")
    typer.echo(
        f"  {'':26s} {'metric':8s} {'local-only':>10s} {'federated':>10s} "
        f"{'pooled':>8s} {'gain':>7s}"
    )
    for name, metrics in rows.items():
        for metric, v in metrics.items():
            typer.echo(
                f"  {name:26s} {metric:8s} {v['local-only']:10.3f} "
                f"{v['federated']:10.3f} {v['pooled']:8.3f} "
                f"{v['gain-over-local']:+7.3f}"
            )


def _print_summary(summary: dict[str, Any]) -> None:
    final = summary["final"]
    rows = [
        ("global (pooled counts)", final["global"]),
        *sorted(final["sites"].items()),
    ]
    typer.echo(f"\nFinal round {summary['rounds']} ({summary['wall-seconds']:.0f}s):")
    typer.echo(
        f"  {'':26s} {'n':>5s} {'accuracy':>9s} {'recall':>7s} {'f1':>6s} "
        f"{'auroc':>6s} {'ece':>6s}"
    )
    for name, m in rows:
        if m is None:
            continue
        typer.echo(
            f"  {name:26s} {int(m['num-examples']):5d} {m['accuracy']:9.3f} "
            f"{m['recall']:7.3f} {m['f1']:6.3f} {m['auroc']:6.3f} {m['ece']:6.3f}"
        )
    if secure := summary.get("secure-aggregation"):
        typer.echo(f"  no per-hospital rows: {secure['per-hospital']}")
    best = summary.get("best") or {}
    exported = summary.get("exported-round")
    if exported is not None and exported != summary["rounds"]:
        typer.echo(
            f"Exported round: {exported} (export-round = best, chosen on "
            f"{summary.get('best-chosen-on')} images)"
        )
    if best:
        chosen = summary.get("best-chosen-on", "")
        on = f", chosen on {chosen} images" if chosen == "val" else ""
        typer.echo(
            f"Best round by {summary['best-metric']}: {summary['best-round']} "
            f"({summary['best-metric']} {best.get(summary['best-metric'], 0.0):.3f}"
            f"{on})"
        )


def config_cmd(
    scenario: Annotated[Path | None, typer.Argument(help="Scenario TOML file.")] = None,
) -> None:
    """Print the resolved configuration (defaults + scenario) as JSON."""
    config = build_config(scenario, {}, [])
    typer.echo(json.dumps(config.to_run_config(), indent=2))
