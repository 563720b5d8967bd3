"""``fedward report RUN_DIR``: the study report and model card of a federation.

Reads only the run folder (aggregate counts and figures), writes PNG plots and
gathers every figure into a :class:`StudyReport`; two Jinja2 templates
(``templates/report.md.j2``, ``templates/report.html.j2``) render it as
``report.md`` and a self-contained ``report.html`` (images inline).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import jinja2

from fedward.metrics.counts import EvalCounts
from fedward.metrics.intervals import intervals
from fedward.reporting import plots
from fedward.runfolder import RunFolder

POOLED = "all hospitals"
BASELINE_KINDS = ("local-only", "federated", "pooled")
BASELINE_METRICS = ("accuracy", "sensitivity", "f1", "auroc")


@cache
def _templates(html: bool) -> jinja2.Environment:
    # One environment per output format: ``_text.j2``'s prose macros are compiled
    # with their environment's autoescaping, on for HTML and off for Markdown.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("fedward.reporting", "templates"),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True)
class Table:
    """A table: its header and rows of cells already formatted as text."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    """A PNG of the run folder: its file name (Markdown) and bytes (HTML)."""

    file: str
    alt: str
    base64: str

    @classmethod
    def of(cls, path: Path, alt: str) -> Figure:
        """Read the PNG at ``path``."""
        return cls(path.name, alt, base64.b64encode(path.read_bytes()).decode())


@dataclass(frozen=True)
class Headline:
    """The final global model's pooled figures and the run's shape."""

    hospitals: int
    rounds: int
    accuracy: float
    f1: float
    auroc: float
    auroc_bound: float
    ece: float
    best_metric: str
    best_round: int | None


@dataclass(frozen=True)
class Baselines:
    """Local-only and pooled training next to the federation, same budget.

    ``intervals`` and ``figure`` are ``None`` for a ``baselines.json`` written by
    a fedward that did not store the baselines' counts.
    """

    epochs: int
    comparison: Table
    intervals: Table | None
    figure: Figure | None


@dataclass(frozen=True)
class PrivacyCard:
    """Differential privacy in the model card: (ε, δ) per hospital and the unit."""

    sites: Table
    accountants: str
    units: str
    image_sites: list[str]
    refused: list[str]


@dataclass(frozen=True)
class StudyReport:
    """Everything the report templates show, gathered from one run folder.

    Attributes
    ----------
    name
        The run folder's name.
    headline
        The pooled figures of the final round.
    scopes
        Per hospital and pooled: n, each metric as ``value [low, high]``, ECE.
    rounds, figures
        The per-round plot, then the per-hospital, confusion, ROC and
        calibration plots.
    baselines
        ``None`` when the run trained no baselines.
    config, classes
        The run's resolved configuration and class names (the model card).
    sites
        Per hospital: images, split sizes from the data check, images evaluated.
    privacy
        ``None`` when the run was not differentially private.
    secure
        Why there are no per-hospital rows (secure aggregation), else ``None``.
    personalization
        Per hospital: the global model, the model fine-tuned at the hospital and
        (with baselines) the hospital alone, on the same held-out images;
        ``None`` when the run did not personalise.
    """

    name: str
    headline: Headline
    scopes: Table
    rounds: Figure
    figures: list[Figure]
    baselines: Baselines | None
    config: dict[str, Any]
    classes: list[str]
    sites: Table
    privacy: PrivacyCard | None = None
    secure: str | None = None
    personalization: Table | None = None


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (with PNG plots) into ``run_dir``.

    Parameters
    ----------
    run_dir
        A finished run folder.

    Returns
    -------
    tuple of Path
        The HTML page and the Markdown file.

    Raises
    ------
    DataError
        If the folder is not a finished run folder.
    """
    folder = RunFolder(run_dir)
    report = gather(folder)
    page = folder.file(RunFolder.REPORT_HTML)
    md = folder.file(RunFolder.REPORT_MD)
    page.write_text(render(report, "report.html.j2"), encoding="utf-8")
    md.write_text(render(report, "report.md.j2"), encoding="utf-8")
    return page, md


def render(report: StudyReport, template: str) -> str:
    """Render ``report`` with one of the package's templates.

    Parameters
    ----------
    report
        What to show.
    template
        ``"report.html.j2"`` (autoescaped) or ``"report.md.j2"``.

    Raises
    ------
    jinja2.UndefinedError
        If the template asks for a value the report does not have.
    """
    html = template.endswith(".html.j2")
    return _templates(html).get_template(template).render(report=report)


def gather(folder: RunFolder) -> StudyReport:
    """Draw the figures of a finished run and gather what the report shows.

    Raises
    ------
    DataError
        If the folder is not a finished run folder.
    """
    folder.require(
        RunFolder.SUMMARY, RunFolder.CONFIG, RunFolder.CURVES, RunFolder.METRICS
    )
    summary = folder.read_json(RunFolder.SUMMARY)
    classes = list(summary["classes"])
    scopes = _final_counts(folder, summary["rounds"])
    return StudyReport(
        name=folder.path.name,
        headline=_headline(summary, scopes, classes),
        scopes=_scope_table(scopes, classes),
        rounds=_rounds_figure(folder),
        figures=_figures(folder, scopes, classes),
        baselines=_baselines(folder, scopes, classes),
        config=folder.read_json(RunFolder.CONFIG),
        classes=classes,
        sites=_site_table(folder, scopes),
        privacy=_privacy_card(summary),
        secure=summary.get("secure-aggregation", {}).get("per-hospital"),
        personalization=_personalization(folder),
    )


def _ci(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _final_counts(folder: RunFolder, final_round: int) -> dict[str, EvalCounts]:
    rows = [r for r in folder.read_jsonl(RunFolder.CURVES) if r["round"] == final_round]
    scopes = {r["site"] or POOLED: EvalCounts.from_json(r) for r in rows}
    return {POOLED: scopes.pop(POOLED), **dict(sorted(scopes.items()))}


def _headline(
    summary: dict[str, Any], scopes: dict[str, EvalCounts], classes: list[str]
) -> Headline:
    pooled = scopes[POOLED].figures(classes)
    return Headline(
        hospitals=len(scopes) - 1
        or len(summary.get("secure-aggregation", {}).get("took-part", {})),
        rounds=summary["rounds"],
        accuracy=pooled["accuracy"],
        f1=pooled["f1"],
        auroc=pooled["auroc"],
        auroc_bound=pooled["auroc-bound"],
        ece=pooled["ece"],
        best_metric=summary.get("best-metric", "f1"),
        best_round=summary.get("best-round"),
    )


def _scope_table(scopes: dict[str, EvalCounts], classes: list[str]) -> Table:
    rows = []
    for name, counts in scopes.items():
        cis = (_ci(*v) for v in intervals(counts, classes).values())
        ece = counts.figures(classes)["ece"]
        rows.append([name, str(counts.num_examples), *cis, f"{ece:.3f}"])
    header = ["scope", "n", *intervals(scopes[POOLED], classes), "ECE"]
    return Table(header, rows)


def _rounds_figure(folder: RunFolder) -> Figure:
    path = folder.file(RunFolder.PLOT)
    if not path.is_file():
        plots.plot_rounds(folder.read_jsonl(RunFolder.METRICS), path)
    return Figure.of(path, "accuracy, recall and F1 per round")


def _figures(
    folder: RunFolder, scopes: dict[str, EvalCounts], classes: list[str]
) -> list[Figure]:
    draw: list[tuple[str, str, Callable[[Path], None]]] = [
        ("sites", "metrics per hospital", partial(plots.site_bars, scopes, classes)),
        (
            "confusion",
            "confusion",
            partial(plots.confusion_plot, scopes[POOLED], classes),
        ),
        ("roc", "ROC curves", partial(plots.roc_plot, scopes, classes)),
        ("calibration", "calibration", partial(plots.calibration_plot, scopes[POOLED])),
    ]
    figures = []
    for key, alt, plot in draw:
        path = folder.file(RunFolder.REPORT_FIGURES[key])
        plot(path)
        figures.append(Figure.of(path, alt))
    return figures


def _baselines(
    folder: RunFolder, scopes: dict[str, EvalCounts], classes: list[str]
) -> Baselines | None:
    if not folder.has(RunFolder.BASELINES):
        return None
    data = folder.read_json(RunFolder.BASELINES)
    comparison = data["comparison"]
    rows = [
        [
            name,
            metric,
            f"{v['local-only']:.3f}",
            f"{v['federated']:.3f}",
            f"{v['pooled']:.3f}",
            f"{v['gain-over-local']:+.3f}",
            "-" if v["federated/pooled"] is None else f"{v['federated/pooled']:.2f}",
        ]
        for name, metrics in comparison.items()
        for metric, v in metrics.items()
    ]
    header = ["scope", "metric", "local-only", "federated", "pooled", "gain"]
    table = Table([*header, "fed/pooled"], rows)
    if not all("counts" in data[kind] for kind in ("local-only", "pooled")):
        return Baselines(data["budget-epochs"], table, None, None)
    path = folder.file(RunFolder.BASELINES_PLOT)
    plots.baseline_bars(comparison, path)
    return Baselines(
        data["budget-epochs"],
        table,
        _baseline_intervals(data, scopes, classes),
        Figure.of(path, "local-only vs federated vs pooled"),
    )


def _baseline_intervals(
    data: dict[str, Any], scopes: dict[str, EvalCounts], classes: list[str]
) -> Table:
    header: list[str] = []
    rows = []
    for scope, federated in scopes.items():
        key = "global" if scope == POOLED else scope
        for kind in BASELINE_KINDS:
            counts = (
                federated
                if kind == "federated"
                else EvalCounts.from_json(data[kind]["counts"][key])
            )
            cis = {
                k: v
                for k, v in intervals(counts, classes).items()
                if k.startswith(BASELINE_METRICS)
            }
            header = header or ["scope", "model", *cis]
            rows.append([scope, kind, *(_ci(*v) for v in cis.values())])
    return Table(header, rows)


def _site_table(folder: RunFolder, scopes: dict[str, EvalCounts]) -> Table:
    stats = (
        folder.read_json(RunFolder.DATA_CHECK).get("site-statistics", {})
        if folder.has(RunFolder.DATA_CHECK)
        else {}
    )
    rows = []
    for name, counts in scopes.items():
        if name == POOLED:
            continue
        site = stats.get(name, {})
        per_split = site.get("counts", {})
        splits = (
            str(sum(per_split.get(k, {}).values())) if per_split else "-"
            for k in ("train", "val", "test")
        )
        rows.append(
            [name, str(site.get("images", "-")), *splits, str(counts.num_examples)]
        )
    return Table(["site", "images", "train", "val", "test", "evaluated"], rows)


def _figure(values: dict[str, Any], key: str, spec: str) -> str:
    value = values.get(key)
    return "-" if value is None else format(value, spec)


def _privacy_card(summary: dict[str, Any]) -> PrivacyCard | None:
    privacy = summary.get("privacy")
    if not privacy:
        return None
    sites = privacy["sites"]
    rounds = sorted(
        {r for s in sites.values() for r in s["epsilon-per-round"]}, key=int
    )
    rows = [
        [
            name,
            str(s.get("unit", "-")),
            _figure(s, "epsilon", ".2f"),
            _figure(s, "delta", ".1e"),
            _figure(s, "noise-multiplier", ".2f"),
            _figure(s, "max-grad-norm", "g"),
            *(
                _figure(s["epsilon-per-round"], r, ".2f")
                for r in sorted(rounds, key=int)
            ),
        ]
        for name, s in sorted(sites.items())
    ]
    header = ["site", "unit", "ε", "δ", "noise", "clip"]
    header += [f"ε r{r}" for r in rounds]
    refused = [
        f"round {e['round']}, {e['site']}: {e['reason']}" for e in privacy["refused"]
    ]
    accountants = sorted({str(s.get("accountant", "rdp")) for s in sites.values()})
    return PrivacyCard(
        sites=Table(header, rows),
        accountants="/".join(a.upper() for a in accountants or ["rdp"]),
        units=" or ".join(sorted({str(s.get("unit")) for s in sites.values()}))
        or "image",
        image_sites=sorted(n for n, s in sites.items() if s.get("unit") != "patient"),
        refused=refused,
    )


PERSONAL_METRICS = ("accuracy", "recall", "f1", "auroc")


def _personalization(folder: RunFolder) -> Table | None:
    """Global, personalised and local-only figures side by side per hospital."""
    if not folder.has(RunFolder.PERSONALIZATION):
        return None
    data = folder.read_json(RunFolder.PERSONALIZATION)
    local: dict[str, Any] = {}
    if folder.has(RunFolder.BASELINES):
        only = folder.read_json(RunFolder.BASELINES)["local-only"]
        local = {POOLED: only["global"], **only["sites"]}
    scopes = {POOLED: data["global"], **data["sites"]}
    rows = []
    for name, figures in scopes.items():
        for metric in PERSONAL_METRICS:
            alone = local.get(name, {}).get(metric)
            rows.append(
                [
                    name,
                    metric,
                    f"{figures['global'][metric]:.3f}",
                    f"{figures['personalized'][metric]:.3f}",
                    "-" if alone is None else f"{alone:.3f}",
                ]
            )
    header = ["scope", "metric", "global", "personalised", "local-only"]
    return Table(header, rows)
