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
SECURE_NO_TABLE = (
    "secure aggregation was on, so the server received only sums over the "
    "hospitals and holds no per-hospital figures; each hospital keeps its own"
)
SELECTION = "global-val"  # rows the best round is chosen on (export-round = best)


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

    def record_error(self, server_round: int, site: str, reason: str) -> None:
        """A hospital that failed or refused to train (e.g. its privacy budget)."""
        self._append(
            {"round": server_round, "scope": "error", "site": site, "reason": reason}
        )

    def record_privacy(
        self, server_round: int, site: str, values: Mapping[str, Any]
    ) -> None:
        """What a hospital's private round spent (``dp-epsilon``: run ε so far)."""
        self._append(
            {"round": server_round, "scope": "privacy", "site": site, **values}
        )

    def record_evaluation(
        self, server_round: int, counts: Mapping[str, EvalCounts], per_site: bool = True
    ) -> Metrics:
        """Federated evaluation: exact global figures from the summed counts.

        Writes the global and each hospital's figures to ``metrics.jsonl`` and the
        global score histograms and calibration counts to ``curves.jsonl``;
        returns the global figures. Without ``per_site`` (secure aggregation:
        ``counts`` is already the sum) only the global ones.
        """
        classes = self.config.classes
        pooled = pool(counts.values())
        global_ = pooled.figures(classes)
        counts = counts if per_site else {}
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

    def record_secure(
        self,
        server_round: int,
        stage: str,
        took_part: Mapping[str, bool],
        outcome: Mapping[str, Any],
    ) -> None:
        """A secure sum: each hospital's name and whether it took part, and the sum."""
        for site, part in sorted(took_part.items()):
            self._append(
                {"round": server_round, "scope": "participation", "stage": stage,
                 "site": site, "took-part": part}
            )  # fmt: skip
        self._append(
            {"round": server_round, "scope": f"secure-{stage}", "site": None, **outcome}
        )

    def record_selection(
        self, server_round: int, counts: Mapping[str, EvalCounts]
    ) -> Metrics:
        """Pooled figures on the validation images, to choose the best round on."""
        figures = pool(counts.values()).figures(self.config.classes)
        self._append(
            {"round": server_round, "scope": SELECTION, "site": None, **figures}
        )
        return figures

    def record_central(self, server_round: int, metrics: Metrics) -> None:
        """Centralized evaluation on the server-held test set."""
        self._append(
            {"round": server_round, "scope": "central", "site": None, **metrics}
        )

    def summary(self) -> dict[str, Any]:
        """Final global and per-hospital figures, and the best round.

        The best round maximises the configured ``best-metric`` (minimises it for
        ``loss``); ties go to the earlier round. It is chosen on the validation
        images when the hospitals reported them (``export-round = "best"``), and
        ``best`` is then that round's figures on the evaluation images.
        """
        evals = [r for r in self.rows if r["scope"] == "global"]
        final_round = max((r["round"] for r in evals), default=0)
        metric = self.config.best_metric
        sign = -1.0 if metric == "loss" else 1.0
        chosen = [r for r in self.rows if r["scope"] == SELECTION] or evals
        pick = max(
            chosen,
            key=lambda r: (sign * (r.get(metric) or 0.0), -r["round"]),
            default=None,
        )
        best = next((r for r in evals if pick and r["round"] == pick["round"]), None)
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
            "best-chosen-on": "val" if chosen is not evals else self.config.eval_split,
            "best": best,
            "rejected-updates": sum(r["scope"] == "rejected" for r in self.rows),
            "failed-updates": sum(r["scope"] == "error" for r in self.rows),
            **self._privacy(),
            **self._secure_summary(),
        }

    def _secure_summary(self) -> dict[str, Any]:
        """Secure mode: why no per-hospital figures, who took part, what aborted."""
        if not self.config.secure_aggregation:
            return {}
        taken: dict[str, dict[str, list[int]]] = {}
        for r in self.rows:
            if r["scope"] == "participation" and r["took-part"]:
                stages = taken.setdefault(r["site"], {"train": [], "evaluate": []})
                stages[r["stage"]].append(r["round"])
        aborted = [
            {"round": r["round"], "stage": r["scope"][len("secure-") :],
             "reason": r.get("reason")}
            for r in self.rows
            if r["scope"].startswith("secure-") and r.get("outcome") == "aborted"
        ]  # fmt: skip
        return {
            "secure-aggregation": {
                "per-hospital": SECURE_NO_TABLE,
                "took-part": taken,
                "aborted": aborted,
            }
        }

    def _privacy(self) -> dict[str, Any]:
        """Per hospital: ε per round and the final (ε, δ); the refused rounds."""
        rows = [r for r in self.rows if r["scope"] == "privacy"]
        if not rows and not self.config.dp:
            return {}
        sites: dict[str, dict[str, Any]] = {}
        for row in rows:
            site = sites.setdefault(row["site"], {"epsilon-per-round": {}})
            if "dp-epsilon" in row:
                site["epsilon-per-round"][str(row["round"])] = row["dp-epsilon"]
            site |= {k.removeprefix("dp-"): v for k, v in row.items() if k[:3] == "dp-"}
        errors = [
            {"round": r["round"], "site": r["site"], "reason": r["reason"]}
            for r in self.rows
            if r["scope"] == "error"
        ]
        return {"privacy": {"sites": sites, "refused": errors}}

    def finish(self, **extra: Any) -> dict[str, Any]:
        """Write ``summary.json`` and ``metrics.csv``; return the summary.

        ``extra`` entries (the exported round, personalisation) join the summary.
        """
        self.rounds.__exit__(None, None, None)
        summary = {**self.summary(), **extra}
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
