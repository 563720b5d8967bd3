import json
from pathlib import Path

import numpy as np
import pytest

from fedward.config import FedwardConfig
from fedward.fl.recorder import RunRecorder
from fedward.metrics.counts import EvalCounts
from fedward.reporting.finish import finish_run
from fedward.runfolder import RunFolder

METRICS_FILE, SUMMARY_FILE = RunFolder.METRICS, RunFolder.SUMMARY


def counts(right: int, loss_sum: float = 1.0) -> EvalCounts:
    """Ten images, ``right`` of them classified correctly."""
    labels = np.array([0, 1] * 5)
    preds = np.where(np.arange(10) < right, labels, 1 - labels)
    return EvalCounts.of_batch(np.eye(2)[preds] * 0.6 + 0.2, labels, loss_sum)


def test_run_folder_holds_config_rows_summary_and_plot(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path, FedwardConfig(num_server_rounds=2))
    rec.record_train(1, {"h1": {"train-loss": 0.5, "val-loss": float("nan")}})
    rec.record_evaluation(1, {"h1": counts(5), "h2": counts(7)})
    rec.record_evaluation(2, {"h1": counts(9), "h2": counts(7)})

    summary = rec.finish()
    finish_run(RunFolder(tmp_path))  # what fedward simulate/server do after a run

    rows = [
        json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()
    ]
    assert [r["scope"] for r in rows] == [
        "train",
        "global",
        "site",
        "site",
        "global",
        "site",
        "site",
    ]
    assert rows[0]["val-loss"] is None  # NaN is written as null
    assert summary["rounds"] == 2
    assert summary["final"]["global"]["accuracy"] == pytest.approx(0.8)
    assert summary["final"]["sites"]["h1"]["accuracy"] == 0.9
    assert summary["best-round"] == 2
    assert json.loads((tmp_path / SUMMARY_FILE).read_text()) == summary
    assert json.loads((tmp_path / "config.json").read_text())["num-server-rounds"] == 2
    png = (tmp_path / RunFolder.PLOT).read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 10_000


def test_best_round_follows_the_configured_metric(tmp_path: Path) -> None:
    rec = RunRecorder(tmp_path, FedwardConfig(best_metric="loss"))
    rec.record_evaluation(1, {"h1": counts(9, loss_sum=5.0)})  # better F1
    rec.record_evaluation(2, {"h1": counts(5, loss_sum=1.0)})  # lower loss

    summary = rec.finish()

    assert summary["best-metric"] == "loss"
    assert summary["best-round"] == 2
