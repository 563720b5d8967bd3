"""``fedward report RUN_DIR``: the study report and model card of a federation.

Reads only the run folder (aggregate counts and figures), writes PNG plots,
``report.md`` and a self-contained ``report.html`` (images inline).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedward.errors import DataError
from fedward.metrics.counts import EvalCounts
from fedward.metrics.intervals import intervals
from fedward.reporting import plots
from fedward.reporting.plots import plot_rounds
from fedward.runfolder import RunFolder

CONFIG_FILE, CURVES_FILE, METRICS_FILE = (
    RunFolder.CONFIG,
    RunFolder.CURVES,
    RunFolder.METRICS,
)
PLOT_FILE, SUMMARY_FILE = RunFolder.PLOT, RunFolder.SUMMARY

POOLED = "all hospitals"
INTENDED_USE = (
    "Research and method development: comparing federated training with what each "
    "hospital could train alone. Not a medical device; not for diagnosis. Before any "
    "clinical study a site must evaluate the model on its own, independent data."
)
LIMITS = (
    "Figures come from the hospitals' held-out splits of the data used in this run; "
    "they say nothing about other scanners, populations or prevalences. Intervals "
    "reflect sampling of these test images only (Wilson for proportions, confusion-"
    "matrix bootstrap for F1, Hanley-McNeil for AUROC), not site-to-site variation. "
    "The pooled AUROC is computed from score histograms of width 0.01; its binning "
    "error bound is listed. The built-in demo data are synthetic."
)


@dataclass
class _Document:
    """Blocks rendered both to Markdown and to HTML."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def image(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def markdown(self) -> str:
        out = []
        for kind, value in self.blocks:
            if kind == "h":
                out.append("#" * value[0] + " " + value[1])
            elif kind == "p":
                out.append(value)
            elif kind == "table":
                header, rows = value
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                out.extend("| " + " | ".join(r) + " |" for r in rows)
            else:
                out.append(f"![{value[1]}]({value[0].name})")
            out.append("")
        return "\n".join(out)

    def html(self, title: str) -> str:
        body = []
        for kind, value in self.blocks:
            if kind == "h":
                body.append(f"<h{value[0]}>{html.escape(value[1])}</h{value[0]}>")
            elif kind == "p":
                body.append(f"<p>{html.escape(value)}</p>")
            elif kind == "table":
                header, rows = value
                head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                    for r in rows
                )
                body.append(f"<table><tr>{head}</tr>{cells}</table>")
            else:
                data = base64.b64encode(value[0].read_bytes()).decode()
                body.append(
                    f'<figure><img alt="{html.escape(value[1])}" '
                    f'src="data:image/png;base64,{data}"></figure>'
                )
        style = (
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
            "th{background:#eef}img{max-width:100%}"
        )
        head = f"<meta charset='utf-8'><title>{html.escape(title)}</title>"
        return (
            f"<!DOCTYPE html><html><head>{head}<style>{style}</style></head>"
            f"<body>{''.join(body)}</body></html>\n"
        )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ci(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _final_counts(run_dir: Path, final_round: int) -> dict[str, EvalCounts]:
    rows = [r for r in _read_jsonl(run_dir / CURVES_FILE) if r["round"] == final_round]
    scopes = {r["site"] or POOLED: EvalCounts.from_json(r) for r in rows}
    return {POOLED: scopes.pop(POOLED), **dict(sorted(scopes.items()))}


def write_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (with PNG plots) into ``run_dir``.

    Raises
    ------
    DataError
        If the folder is not a finished run folder.
    """
    for name in (SUMMARY_FILE, CONFIG_FILE, CURVES_FILE, METRICS_FILE):
        if not (run_dir / name).is_file():
            raise DataError(f"{run_dir} is not a finished run folder (no {name})")
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    classes = list(summary["classes"])
    scopes = _final_counts(run_dir, summary["rounds"])
    doc = _Document()
    doc.heading(f"Federated study report: {run_dir.name}", 1)
    _results(doc, run_dir, summary, scopes, classes)
    _baselines(doc, run_dir, scopes, classes)
    _model_card(doc, run_dir, config, summary, scopes)
    md, page = run_dir / RunFolder.REPORT_MD, run_dir / RunFolder.REPORT_HTML
    md.write_text(doc.markdown(), encoding="utf-8")
    page.write_text(doc.html(f"fedward report {run_dir.name}"), encoding="utf-8")
    return page, md


def _results(
    doc: _Document,
    run_dir: Path,
    summary: dict[str, Any],
    scopes: dict[str, EvalCounts],
    classes: list[str],
) -> None:
    pooled = scopes[POOLED].figures(classes)
    doc.para(
        f"{len(scopes) - 1} hospitals, {summary['rounds']} rounds. Final global model "
        f"on all held-out images: accuracy {pooled['accuracy']:.3f}, F1 "
        f"{pooled['f1']:.3f}, AUROC {pooled['auroc']:.3f} (binning error bound "
        f"{pooled['auroc-bound']:.4f}), ECE {pooled['ece']:.3f}. Best round by "
        f"{summary.get('best-metric', 'f1')}: {summary.get('best-round')}."
    )
    doc.heading("Final round, per hospital (95 % intervals)")
    header = ["scope", "n", *intervals(scopes[POOLED], classes), "ECE"]
    rows = []
    for name, counts in scopes.items():
        cis = intervals(counts, classes)
        ece = counts.figures(classes)["ece"]
        rows.append(
            [
                name,
                str(counts.num_examples),
                *(_ci(*v) for v in cis.values()),
                f"{ece:.3f}",
            ]
        )
    doc.table(header, rows)
    rows_path = run_dir / PLOT_FILE
    if not rows_path.is_file():
        plot_rounds(_read_jsonl(run_dir / METRICS_FILE), rows_path)
    doc.heading("Metrics per round")
    doc.image(rows_path, "accuracy, recall and F1 per round")
    figures = [
        (
            RunFolder.REPORT_FIGURES["sites"],
            plots.site_bars,
            (scopes, classes),
            "metrics per hospital",
        ),
        (
            RunFolder.REPORT_FIGURES["confusion"],
            plots.confusion_plot,
            (scopes[POOLED], classes),
            "confusion",
        ),
        (
            RunFolder.REPORT_FIGURES["roc"],
            plots.roc_plot,
            (scopes, classes),
            "ROC curves",
        ),
        (
            RunFolder.REPORT_FIGURES["calibration"],
            plots.calibration_plot,
            (scopes[POOLED],),
            "calibration",
        ),
    ]
    doc.heading("Figures")
    for name, draw, args, alt in figures:
        draw(*args, run_dir / name)  # type: ignore[operator]
        doc.image(run_dir / name, alt)


def _baselines(
    doc: _Document, run_dir: Path, scopes: dict[str, EvalCounts], classes: list[str]
) -> None:
    path = run_dir / RunFolder.BASELINES
    if not path.is_file():
        doc.heading("Baselines")
        doc.para("Not run (fedward simulate --baselines trains them).")
        return
    data = json.loads(path.read_text())
    comparison = data["comparison"]
    doc.heading(f"Baselines (same budget: {data['budget-epochs']} epochs)")
    rows = []
    for name, metrics in comparison.items():
        for metric, v in metrics.items():
            ratio = v["federated/pooled"]
            rows.append(
                [
                    name,
                    metric,
                    f"{v['local-only']:.3f}",
                    f"{v['federated']:.3f}",
                    f"{v['pooled']:.3f}",
                    f"{v['gain-over-local']:+.3f}",
                    "-" if ratio is None else f"{ratio:.2f}",
                ]
            )
    doc.table(
        ["scope", "metric", "local-only", "federated", "pooled", "gain", "fed/pooled"],
        rows,
    )
    if not all("counts" in data[kind] for kind in ("local-only", "pooled")):
        return  # written by a fedward that did not store the baselines' counts
    doc.heading("Local-only vs federated vs pooled, with 95 % intervals", 3)
    wanted = ("accuracy", "sensitivity", "f1", "auroc")
    header: list[str] = []
    rows = []
    for scope, fed in scopes.items():
        key = "global" if scope == POOLED else scope
        for kind in ("local-only", "federated", "pooled"):
            counts = (
                fed
                if kind == "federated"
                else EvalCounts.from_json(data[kind]["counts"][key])
            )
            cis = {
                k: v
                for k, v in intervals(counts, classes).items()
                if k.startswith(wanted)
            }
            header = header or ["scope", "model", *cis]
            rows.append([scope, kind, *(_ci(*v) for v in cis.values())])
    doc.table(header, rows)
    plots.baseline_bars(comparison, run_dir / RunFolder.BASELINES_PLOT)
    doc.image(run_dir / RunFolder.BASELINES_PLOT, "local-only vs federated vs pooled")


def _model_card(
    doc: _Document,
    run_dir: Path,
    config: dict[str, Any],
    summary: dict[str, Any],
    scopes: dict[str, EvalCounts],
) -> None:
    doc.heading("Model card")
    doc.para(
        f"Model: {config['model']}, {config['in-channels']}-channel "
        f"{config['image-size']}x{config['image-size']} input, classes "
        f"{', '.join(summary['classes'])}. Exported as TorchScript, ONNX and "
        "safetensors with model.json in export/."
    )
    doc.para(
        f"Training: FedAvg weighted by example count, {config['num-server-rounds']} "
        f"rounds x {config['local-epochs']} local epochs, Adam lr "
        f"{config['learning-rate']}, batch {config['batch-size']}, augmentation "
        f"{'on' if config['augment'] else 'off'} (shear {config['shear']}, zoom "
        f"{config['zoom']}, flip {config['horizontal-flip']}), seed {config['seed']}."
    )
    doc.para(
        "Privacy: hospitals sent model weights, example counts, training losses and "
        "evaluation counts (confusion matrices, score histograms, calibration bins) "
        "and aggregate data statistics; no image, per-image score or header value. "
        "Differential privacy: off. Secure aggregation: off."
    )
    check = run_dir / RunFolder.DATA_CHECK
    rows = []
    stats = (
        json.loads(check.read_text()).get("site-statistics", {})
        if check.is_file()
        else {}
    )
    for name, counts in scopes.items():
        if name == POOLED:
            continue
        s = stats.get(name, {})
        per_split = s.get("counts", {})
        rows.append(
            [
                name,
                str(s.get("images", "-")),
                *(
                    str(sum(per_split.get(k, {}).values())) if per_split else "-"
                    for k in ("train", "val", "test")
                ),
                str(counts.num_examples),
            ]
        )
    doc.table(["site", "images", "train", "val", "test", "evaluated"], rows)
    doc.heading("Intended use", 3)
    doc.para(INTENDED_USE)
    doc.heading("Limits", 3)
    doc.para(LIMITS)
