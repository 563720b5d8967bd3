"""The run folder: resolved config, per-round metrics, summary and plot."""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedward.common.config import FedwardConfig
from fedward.common.evaluation import EvalCounts, pool
from fedward.common.progress import ProgressBar

logger = logging.getLogger("fedward.progress")

Metrics = Mapping[str, float]
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "metrics.png"
CONFIG_FILE = "config.json"
PLOTTED = ("accuracy", "recall", "f1")
CURVES_FILE = "curves.jsonl"
CSV_FILE = "metrics.csv"


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe copy: NaN becomes ``null``."""
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in values.items()
    }


class RunRecorder:
    """Writes a run folder as the federation goes, and logs one line per round."""

    def __init__(self, run_dir: Path, config: FedwardConfig) -> None:
        self.run_dir = run_dir
        self.config = config
        self.started = time.perf_counter()
        self.round_started = self.started
        self.rows: list[dict[str, Any]] = []
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(
            json.dumps(config.to_run_config(), indent=2) + "\n", encoding="utf-8"
        )
        (run_dir / METRICS_FILE).write_text("", encoding="utf-8")
        (run_dir / CURVES_FILE).write_text("", encoding="utf-8")
        self.rounds = ProgressBar("round", config.num_server_rounds).__enter__()

    def _append(self, row: dict[str, Any]) -> None:
        row = _clean(row)
        self.rows.append(row)
        with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def record_train(self, server_round: int, sites: Mapping[str, Metrics]) -> None:
        """Training figures each hospital reported for a round."""
        for site, metrics in sorted(sites.items()):
            self._append(
                {"round": server_round, "scope": "train", "site": site, **metrics}
            )

    def record_rejected(
        self, server_round: int, site: str, problems: list[str]
    ) -> None:
        """An update the server refused to aggregate."""
        self._append(
            {
                "round": server_round,
                "scope": "rejected",
                "site": site,
                "problems": problems,
            }
        )

    def record_evaluation(
        self, server_round: int, counts: Mapping[str, EvalCounts]
    ) -> Metrics:
        """Federated evaluation: exact global figures from the summed counts.

        Writes the global and each hospital's figures to ``metrics.jsonl`` and the
        global score histograms and calibration counts to ``curves.jsonl``;
        returns the global figures.
        """
        classes = self.config.classes
        pooled = pool(counts.values())
        global_ = pooled.figures(classes)
        sites = {name: c.figures(classes) for name, c in counts.items()}
        with (self.run_dir / CURVES_FILE).open("a", encoding="utf-8") as fh:
            for site, c in [(None, pooled), *sorted(counts.items())]:
                row = {"round": server_round, "site": site, **c.to_json()}
                fh.write(json.dumps(row) + "\n")
        self._append(
            {"round": server_round, "scope": "global", "site": None, **global_}
        )
        for site, metrics in sorted(sites.items()):
            self._append(
                {"round": server_round, "scope": "site", "site": site, **metrics}
            )
        now = time.perf_counter()
        self.rounds.step(
            f"loss {global_['loss']:.4f}  accuracy {global_['accuracy']:.3f}  "
            f"recall {global_['recall']:.3f}  f1 {global_['f1']:.3f}  "
            f"auroc {global_['auroc']:.3f}  ({now - self.round_started:.1f}s)"
        )
        self.round_started = now
        return global_

    def record_central(self, server_round: int, metrics: Metrics) -> None:
        """Centralized evaluation on the server-held test set."""
        self._append(
            {"round": server_round, "scope": "central", "site": None, **metrics}
        )

    def summary(self) -> dict[str, Any]:
        """Final global and per-hospital figures, and the best round.

        The best round maximises the configured ``best-metric`` (minimises it for
        ``loss``); ties go to the earlier round.
        """
        evals = [r for r in self.rows if r["scope"] == "global"]
        final_round = max((r["round"] for r in evals), default=0)
        metric = self.config.best_metric
        sign = -1.0 if metric == "loss" else 1.0
        best = max(
            evals,
            key=lambda r: (sign * (r.get(metric) or 0.0), -r["round"]),
            default=None,
        )
        return {
            "rounds": final_round,
            "wall-seconds": round(time.perf_counter() - self.started, 2),
            "classes": self.config.classes,
            "final": {
                "global": next((r for r in evals if r["round"] == final_round), None),
                "sites": {
                    r["site"]: r
                    for r in self.rows
                    if r["scope"] == "site" and r["round"] == final_round
                },
                "central": next(
                    (
                        r
                        for r in self.rows
                        if r["scope"] == "central" and r["round"] == final_round
                    ),
                    None,
                ),
            },
            "best-metric": metric,
            "best-round": best["round"] if best else None,
            "best": best,
            "rejected-updates": sum(r["scope"] == "rejected" for r in self.rows),
        }

    def finish(self) -> dict[str, Any]:
        """Write ``summary.json`` and the plot; return the summary."""
        self.rounds.__exit__(None, None, None)
        summary = self.summary()
        write_csv(self.rows, self.run_dir / CSV_FILE)
        (self.run_dir / SUMMARY_FILE).write_text(
            json.dumps(summary, indent=2) + "\n", encoding="utf-8"
        )
        plot_rounds(self.rows, self.run_dir / PLOT_FILE)
        return summary


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Every metrics row as a spreadsheet: one column per figure."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if not isinstance(v, list)})


def plot_rounds(rows: list[dict[str, Any]], path: Path) -> None:
    """PNG of accuracy, recall and F1 per round: global bold, hospitals thin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.6))
    sites = sorted({r["site"] for r in rows if r["scope"] == "site"})
    for ax, metric in zip(axes, PLOTTED, strict=True):
        for scope, site, style in [("global", None, "-o")] + [
            ("site", s, "--") for s in sites
        ]:
            pts = [
                (r["round"], r[metric])
                for r in rows
                if r["scope"] == scope
                and r["site"] == site
                and r.get(metric) is not None
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                label = "global (pooled counts)" if site is None else site
                ax.plot(
                    xs, ys, style, label=label, linewidth=2.5 if site is None else 1
                )
        ax.set_title(metric)
        ax.set_xlabel("round")
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
