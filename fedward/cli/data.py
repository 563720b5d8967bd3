"""``fedward data``: write the demo data, check what a site holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fedward.config import FedwardConfig
from fedward.console import setup_logging

app = typer.Typer(help="Make and inspect data.", no_args_is_help=True)


@app.command("demo")
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


@app.command("check")
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
    """What each site holds, in aggregate; with several sites, how they differ.

    A folder with no labels (no class folders, no labels CSV) gets an inventory
    instead: files by modality, size, bit depth, frames and transfer syntax,
    which decode, which are quarantined and why, and how to add labels.
    """
    setup_logging()
    from fedward.data.inventory import has_labels, inventory
    from fedward.data.load import load_site, site_configs
    from fedward.data.stats import compare_sites, site_statistics

    sites = site_configs(sources)
    names = classes or ",".join(_found_classes(sources))
    run = FedwardConfig.from_mapping({"class-names": names, "image-size": image_size})
    stats: dict[str, Any] = {}
    unlabelled: dict[str, Any] = {}
    for site in sites:
        labelled = has_labels(site)
        found = stats if labelled else unlabelled
        name = (
            site.name if site.name not in found else f"{site.data_path} ({site.name})"
        )
        if labelled:
            stats[name] = site_statistics(load_site(site, run), run.classes)
        else:
            unlabelled[name] = inventory(site, run)
    report: dict[str, Any] = {"classes": run.classes, "sites": stats} if stats else {}
    if len(stats) > 1:
        report["comparison"] = compare_sites(stats, run.classes)
    if unlabelled:
        report["unlabelled"] = unlabelled
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for name, s in stats.items():
        _print_statistics(name, s)
    for warning in report.get("comparison", {}).get("warnings", []):
        typer.echo(f"WARNING {warning}")
    for name, found in unlabelled.items():
        _print_inventory(name, found)


def _print_statistics(name: str, s: dict[str, Any]) -> None:
    typer.echo(f"{name}: {s['images']} usable images, {s['quarantined']} quarantined")
    for split, counts in s["counts"].items():
        typer.echo(f"  {split:5s} " + "  ".join(f"{c}={n}" for c, n in counts.items()))
    for field, values in s["headers"].items():
        typer.echo(f"  {field}: " + ", ".join(f"{v} ({n})" for v, n in values.items()))
    i = s["intensity"]
    typer.echo(
        f"  intensity mean {i['mean']:.1f} sd {i['std']:.1f} "
        f"p1/p50/p99 {i['p01']:.0f}/{i['p50']:.0f}/{i['p99']:.0f}"
    )
    for reason, n in s["quarantine-reasons"].items():
        typer.echo(f"  quarantined: {reason} ({n})")


INVENTORY_LINES = {
    "modality": "modality",
    "photometric-interpretation": "photometric interpretation",
    "image-size": "image size (rows x columns)",
    "bits-stored": "bits stored",
    "frames": "frames",
    "transfer-syntax": "transfer syntax",
}
LISTED = 20  # quarantined files printed; --json and quarantine.csv have them all


def _print_inventory(name: str, inv: dict[str, Any]) -> None:
    kinds = ", ".join(f"{k} {n}" for k, n in inv["kinds"].items() if n)
    typer.echo(f"{name}: {inv['files']} files ({kinds}), no labels")
    typer.echo(
        f"  {inv['decodable']} decodable, {inv['quarantined']} quarantined, "
        f"{inv['excluded-by-filters']} left out by the site's header filters"
    )
    for key, title in INVENTORY_LINES.items():
        if inv[key]:
            values = ", ".join(f"{v} ({n})" for v, n in inv[key].items())
            typer.echo(f"  {title}: {values}")
    for reason, n in inv["quarantine-reasons"].items():
        typer.echo(f"  quarantined: {reason} ({n})")
    for path, reason in inv["quarantined-files"][:LISTED]:
        typer.echo(f"  quarantined file {path}: {reason}")
    more = len(inv["quarantined-files"]) - LISTED
    if more > 0:
        where = inv["quarantine-report"] or "--json"
        typer.echo(f"  ... and {more} more quarantined files (all in {where})")
    typer.echo(f"  {inv['labels']}")


def _found_classes(sources: list[Path]) -> list[str]:
    from fedward.data.discovery import data_class_names

    found: set[str] = set()
    for path in sources:
        if path.is_dir():
            found.update(data_class_names(path))
    return sorted(found) or FedwardConfig().classes
