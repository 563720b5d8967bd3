"""The one ``fedward`` command: simulate, data, models.

User mistakes (a bad config, missing data) print one line per problem on stderr
and exit with the error's code; no traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fedward.common.config import FedwardConfig, read_toml
from fedward.common.errors import ConfigError, FedwardError

app = typer.Typer(
    help="Federated learning for hospital imaging on Flower and PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Make and inspect data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
certs_app = typer.Typer(
    help="Consortium keys: CA, server TLS, hospitals.", no_args_is_help=True
)
app.add_typer(certs_app, name="certs")

logger = logging.getLogger("fedward")


def setup_logging(verbose: bool = False) -> None:
    """Plain ``fedward`` log lines on stderr; Flower's own only with ``--verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-7s %(message)s"))
    root = logging.getLogger("fedward")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    os.environ.setdefault("FLWR_LOG_LEVEL", "INFO" if verbose else "WARNING")


def _parse_set(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs from ``--set``; values parsed as TOML scalars."""
    import tomllib

    values: dict[str, Any] = {}
    problems = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set expects key=value, got {pair!r}")
            continue
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw  # a bare word is a string
    if problems:
        raise ConfigError(problems)
    return values


def build_config(
    scenario: Path | None, options: dict[str, Any], settings: list[str]
) -> FedwardConfig:
    """Defaults, then the scenario, then flags and ``--set``; all checked at once."""
    values = read_toml(scenario) if scenario else {}
    values.update({k: v for k, v in options.items() if v is not None})
    values.update(_parse_set(settings))
    return FedwardConfig.from_mapping(values)


@app.command()
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
    verbose: Annotated[bool, typer.Option(help="Also show Flower's own log.")] = False,
) -> None:
    """Run a multi-hospital federation on this machine (demo data by default)."""
    setup_logging(verbose)
    from fedward.simulation import runner

    options = {
        "num-server-rounds": rounds,
        "local-epochs": local_epochs,
        "num-hospitals": hospitals,
        "model": model,
        "data-root": str(data) if data else None,
        "run-dir": str(run_dir) if run_dir else None,
    }
    config = build_config(scenario, options, set_ or [])
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
    summary = runner.run(config)
    _print_summary(summary)
    if baselines:
        from fedward.simulation import baselines as base

        figures = base.run_baselines(config)
        rows = base.compare(summary, figures)
        base.write_baselines(Path(config.run_dir), figures, rows)
        _print_baselines(rows, figures["budget-epochs"])
    typer.echo(f"Run folder: {config.run_dir}")


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
    best = summary.get("best") or {}
    if best:
        typer.echo(
            f"Best round by {summary['best-metric']}: {summary['best-round']} "
            f"({summary['best-metric']} {best.get(summary['best-metric'], 0.0):.3f})"
        )


@data_app.command("demo")
def data_demo(
    out: Annotated[Path, typer.Option(help="Folder to write.")] = Path("demo-data"),
    hospitals: Annotated[int, typer.Option(min=1, max=100)] = 3,
    seed: Annotated[int, typer.Option(min=0)] = FedwardConfig().seed,
    max_images: Annotated[
        int | None,
        typer.Option(min=4, help="Cap on images per hospital (quick tries)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="png, or dicom (with fake patient data).")
    ] = "png",
) -> None:
    """Write the synthetic (not real) chest-X-ray-like demo set as class folders."""
    setup_logging()
    from fedward.simulation.demo import write_demo

    profiles = write_demo(out, hospitals, seed=seed, max_images=max_images, fmt=fmt)
    for p in profiles:
        typer.echo(
            f"{out / p.name}: {p.num_images} images, {p.prevalence:.0%} opacity, "
            f"{p.resolution}px"
        )


@data_app.command("check")
def data_check(
    sources: Annotated[
        list[Path],
        typer.Argument(help="Data folders, site.toml files, or a folder of hospitals."),
    ],
    classes: Annotated[
        str | None, typer.Option(help="Class names, comma-separated (default: found).")
    ] = None,
    image_size: Annotated[int, typer.Option(min=16)] = FedwardConfig().image_size,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What each site holds, in aggregate; with several sites, how they differ."""
    setup_logging()
    from fedward.common.data.sources import load_site
    from fedward.common.site_stats import compare_sites, site_statistics
    from fedward.simulation.partition import site_configs

    sites = site_configs(sources)
    names = classes or ",".join(_found_classes(sources))
    run = FedwardConfig.from_mapping({"class-names": names, "image-size": image_size})
    stats: dict[str, Any] = {}
    for site in sites:
        name = (
            site.name if site.name not in stats else f"{site.data_path} ({site.name})"
        )
        stats[name] = site_statistics(load_site(site, run), run.classes)
    report: dict[str, Any] = {"classes": run.classes, "sites": stats}
    if len(stats) > 1:
        report["comparison"] = compare_sites(stats, run.classes)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for name, s in stats.items():
        typer.echo(
            f"{name}: {s['images']} usable images, {s['quarantined']} quarantined"
        )
        for split, counts in s["counts"].items():
            typer.echo(
                f"  {split:5s} " + "  ".join(f"{c}={n}" for c, n in counts.items())
            )
        for field, values in s["headers"].items():
            typer.echo(
                f"  {field}: " + ", ".join(f"{v} ({n})" for v, n in values.items())
            )
        i = s["intensity"]
        typer.echo(
            f"  intensity mean {i['mean']:.1f} sd {i['std']:.1f} "
            f"p1/p50/p99 {i['p01']:.0f}/{i['p50']:.0f}/{i['p99']:.0f}"
        )
        for reason, n in s["quarantine-reasons"].items():
            typer.echo(f"  quarantined: {reason} ({n})")
    for warning in report.get("comparison", {}).get("warnings", []):
        typer.echo(f"WARNING {warning}")


def _found_classes(sources: list[Path]) -> list[str]:
    from fedward.simulation.partition import data_class_names

    found: set[str] = set()
    for path in sources:
        if path.is_dir():
            found.update(data_class_names(path))
    return sorted(found) or FedwardConfig().classes


@app.command()
def predict(
    model: Annotated[
        Path,
        typer.Argument(help="model.onnx, model.torchscript.pt, export/ or model.pt"),
    ],
    paths: Annotated[
        list[Path], typer.Argument(help="PNG/JPEG/DICOM files or folders.")
    ],
    out: Annotated[Path, typer.Option(help="CSV to write.")] = Path("predictions.csv"),
) -> None:
    """Class probabilities for images, as a CSV (one row per file)."""
    setup_logging()
    from fedward.common.export import Predictor
    from fedward.common.predict import predict_files

    predictor = Predictor(model)
    done, failed = predict_files(predictor, paths, out)
    typer.echo(f"{done} predicted, {failed} unreadable; written to {out}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
) -> None:
    """Write report.html (self-contained) and report.md with plots and model card."""
    setup_logging()
    from fedward.server.study_report import write_report

    page, md = write_report(run_dir)
    typer.echo(f"{page}\n{md}")


@app.command()
def explain(
    model: Annotated[Path, typer.Option(help="Run folder, model.pt or .safetensors.")],
    images: Annotated[list[Path], typer.Argument(help="Image/DICOM files or folders.")],
    out: Annotated[Path, typer.Option(help="Folder for overlays.")] = Path("gradcam"),
) -> None:
    """Grad-CAM overlays of the global model, computed here, on this site's images."""
    setup_logging()
    from fedward.common.explain import explain_paths

    rows, skipped = explain_paths(model, images, out)
    for path, reason in skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    typer.echo(f"{len(rows)} overlays written to {out} (gradcam.csv lists them)")


@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A run folder's model.pt.")],
    out: Annotated[Path, typer.Option(help="Folder to write.")] = Path("export"),
) -> None:
    """Export a checkpoint as TorchScript, ONNX and safetensors with model.json."""
    setup_logging()
    from fedward.common.export import export_model, load_checkpoint

    for kind, path in export_model(*load_checkpoint(checkpoint), out).items():
        typer.echo(f"{kind:12s} {path}")


@app.command("models")
def models_cmd() -> None:
    """List the registered model names."""
    from fedward.common.models import list_models

    for name in list_models():
        typer.echo(name)


@app.command("config")
def config_cmd(
    scenario: Annotated[Path | None, typer.Argument(help="Scenario TOML file.")] = None,
) -> None:
    """Print the resolved configuration (defaults + scenario) as JSON."""
    config = build_config(scenario, {}, [])
    typer.echo(json.dumps(config.to_run_config(), indent=2))


def _register_deployment() -> None:
    from fedward.cli_deploy import register

    register(app, setup_logging)


_register_deployment()


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
