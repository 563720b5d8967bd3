"""The run recorder: writes a federation's run folder round by round."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedward.config import FedwardConfig
from fedward.console import ProgressBar
from fedward.metrics.counts import EvalCounts, pool
from fedward.runfolder import RunFolder, json_safe

logger = logging.getLogger("fedward.progress")

Metrics = Mapping[str, float]


class RunRecorder:
    """Writes a run folder as the federation goes, and logs one line per round.

    Parameters
    ----------
    run_dir
        The run folder.
    config
        The run's configuration.
    resumed_round
        When resuming: the last complete round. Rows written after it (the round
        a crash interrupted) are dropped; the rest are kept.
    elapsed
        When resuming: the seconds the run took before, counted in its
        ``wall-seconds``.
    """

    def __init__(
        self,
        run_dir: Path,
        config: FedwardConfig,
        *,
        resumed_round: int = 0,
        elapsed: float = 0.0,
    ) -> None:
        self.folder = RunFolder(run_dir)
        self.config = config
        self.round_started = time.perf_counter()
        self.started = self.round_started - elapsed
        self.rows: list[dict[str, Any]] = []
        if resumed_round:
            self.rows = self.folder.keep_rounds(RunFolder.METRICS, resumed_round)
            self.folder.keep_rounds(RunFolder.CURVES, resumed_round)
        else:
            self.folder.start(config.to_run_config())
        self.rounds = ProgressBar(
            "round", config.num_server_rounds, done=resumed_round
        ).__enter__()

    @property
    def elapsed(self) -> float:
        """Seconds since the run started, over all its sessions."""
        return time.perf_counter() - self.started

    def _append(self, row: dict[str, Any]) -> None:
        row = json_safe(row)
        self.rows.append(row)
        self.folder.append_jsonl(RunFolder.METRICS, row)

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
        for site, c in [(None, pooled), *sorted(counts.items())]:
            row = {"round": server_round, "site": site, **c.to_json()}
            self.folder.append_jsonl(RunFolder.CURVES, row)
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
        """Write ``summary.json`` and ``metrics.csv``; return the summary."""
        self.rounds.__exit__(None, None, None)
        summary = self.summary()
        write_csv(self.rows, self.folder.file(RunFolder.CSV))
        self.folder.write_json(RunFolder.SUMMARY, summary)
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
