"""Secure rounds through the real ClientApp and strategy; only transport is local."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.common.serde import message_from_proto
from flwr.proto.message_pb2 import Message as ProtoMessage

from fedward.config import FedwardConfig
from fedward.fl.client_app import make_client_app
from fedward.fl.protocol import RecordKey, to_arrays
from fedward.fl.recorder import RunRecorder
from fedward.fl.secagg.quantise import encode_eval_counts
from fedward.fl.secagg.records import MASKED, SECAGG
from fedward.fl.secagg.strategy import SecureAggregation
from fedward.fl.strategies import FedwardFedAvg
from fedward.metrics.counts import EvalCounts, pool
from fedward.models import get_model
from fedward.runfolder import RunFolder
from fedward.simulation.inprocess import InProcessGrid
from tests.conftest import WriteFolder
from tests.fl.secagg.grid import RUN_ID, server_task

HOSPITALS = 3
NodeConfig = dict[str, bool | float | int | str]
pytestmark = pytest.mark.usefixtures(server_task.__name__)


@pytest.fixture
def config(write_folder: WriteFolder, tmp_path: Path) -> FedwardConfig:
    for i in range(HOSPITALS):
        write_folder(f"data/hospital-{i + 1}", per_class=5 + 2 * i, seed=i)
    return FedwardConfig(
        image_size=32, batch_size=4, local_epochs=1, val_fraction=0.2,
        test_fraction=0.3, data_root=str(tmp_path / "data"),
        num_hospitals=HOSPITALS, augment=False, model="seed-cnn",
    )  # fmt: skip


def make_grid(config: FedwardConfig, audit: Path | None = None) -> InProcessGrid:
    app = make_client_app(config)
    configs: dict[int, NodeConfig] = {}
    for i in range(HOSPITALS):
        node: NodeConfig = {"partition-id": i, "num-partitions": HOSPITALS}
        if audit is not None:
            node["audit-dir"] = str(audit / f"hospital-{i + 1}")
        configs[100 + i] = node
    return InProcessGrid(app, configs, run_id=RUN_ID)


def federate(
    config: FedwardConfig, grid: InProcessGrid, rounds: int = 1
) -> ArrayRecord:
    recorder = RunRecorder(Path(config.run_dir), config)
    inner = FedwardFedAvg(
        recorder=recorder, class_names=config.classes, min_train_nodes=2,
        min_evaluate_nodes=2, min_available_nodes=2,
    )  # fmt: skip
    strategy = (
        SecureAggregation(inner, config, recorder)
        if config.secure_aggregation
        else inner
    )
    result = strategy.start(
        grid=grid, initial_arrays=initial(config), num_rounds=rounds
    )
    recorder.finish()
    return result.arrays


def initial(config: FedwardConfig) -> ArrayRecord:
    torch.manual_seed(0)
    return to_arrays(get_model(config.model, num_classes=2, image_size=32))


def plain_and_secure(
    config: FedwardConfig, tmp_path: Path
) -> tuple[FedwardConfig, FedwardConfig]:
    """The same run, plain and secure, each with its own run folder."""
    return config.replace(run_dir=str(tmp_path / "plain")), config.replace(
        run_dir=str(tmp_path / "secure"), secure_aggregation=True
    )


def rows(run: Path, scope: str) -> list[dict[str, Any]]:
    lines = (run / RunFolder.METRICS).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["scope"] == scope]


def replies(audit: Path) -> dict[str, list[bytes]]:
    return {
        site.name: [p.read_bytes() for p in sorted(site.iterdir())]
        for site in sorted(audit.iterdir())
    }


def kept_at(run: Path, site: str, stage: str) -> list[dict[str, Any]]:
    path = RunFolder(run).site_dir(site) / RunFolder.SITE_FIGURES
    lines = path.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["stage"] == stage]


def windows(values: np.ndarray, count: int = 6, size: int = 8) -> list[bytes]:
    flat = values.ravel()
    starts = np.linspace(0, len(flat) - size, count).astype(int)
    return [flat[s : s + size].tobytes() for s in starts]


def test_secure_round_equals_plain_fedavg(
    config: FedwardConfig, tmp_path: Path
) -> None:
    plain_cfg, secure_cfg = plain_and_secure(config, tmp_path)

    plain = federate(plain_cfg, make_grid(plain_cfg))
    secure = federate(secure_cfg, make_grid(secure_cfg))

    bound = rows(tmp_path / "secure", "secure-train")[0]["quantisation-error-bound"]
    assert bound < 1e-5
    for key in plain:
        diff = np.abs(secure[key].numpy() - plain[key].numpy()).max()
        assert diff <= bound + 1e-7, key  # + float32 rounding of the weights
    (g_plain,), (g_secure,) = (
        rows(tmp_path / "plain", "global"),
        rows(tmp_path / "secure", "global"),
    )
    assert g_secure["num-examples"] == g_plain["num-examples"]
    for metric in ("accuracy", "recall", "f1", "auroc", "ece", "loss"):
        assert g_secure[metric] == pytest.approx(g_plain[metric], abs=1e-3)
    # the server's records: per hospital only its name and whether it took part
    assert rows(tmp_path / "secure", "site") == []
    assert rows(tmp_path / "secure", "train") == []
    took_part = rows(tmp_path / "secure", "participation")
    assert {(r["site"], r["stage"], r["took-part"]) for r in took_part} == {
        (f"hospital-{i}", stage, True) for i in (1, 2, 3) for stage in
        ("train", "evaluate")
    }  # fmt: skip
    assert set(took_part[0]) == {"round", "scope", "stage", "site", "took-part"}
    summary = json.loads((tmp_path / "secure" / RunFolder.SUMMARY).read_text())
    assert summary["final"]["sites"] == {}
    assert "no per-hospital figures" in summary["secure-aggregation"]["per-hospital"]


def test_audit_no_reply_holds_plain_weights_or_counts_and_the_sum_is_exact(
    config: FedwardConfig, tmp_path: Path
) -> None:
    plain_cfg, secure_cfg = plain_and_secure(config, tmp_path)
    run = tmp_path / "secure"

    federate(plain_cfg, make_grid(plain_cfg, tmp_path / "plain-audit"))
    federate(secure_cfg, make_grid(secure_cfg, tmp_path / "secure-audit"))

    plain_sent, secure_sent = (
        replies(tmp_path / "plain-audit"),
        replies(tmp_path / "secure-audit"),
    )
    everything = b"".join(b for blobs in secure_sent.values() for b in blobs)
    sent = initial(config)
    for site, blobs in plain_sent.items():
        # the weights this hospital trained (round 1 trains the same in both runs)
        trained = next(
            m.content[RecordKey.ARRAYS]
            for m in (message_from_proto(ProtoMessage.FromString(b)) for b in blobs)
            if RecordKey.ARRAYS in m.content
        )
        assert isinstance(trained, ArrayRecord)
        for key in ("features.0.weight", "classifier.1.weight"):
            weights = trained[key].numpy()
            update = weights - sent[key].numpy()
            plain_windows = windows(weights)
            assert all(w in b"".join(blobs) for w in plain_windows)  # found in plain
            for window in [*plain_windows, *windows(update)]:
                assert window not in everything, (site, key)
        # the counts it computed (kept in its own file) left it masked only
        (row,) = kept_at(run, site, "evaluate")
        encoded = encode_eval_counts(EvalCounts.from_json(row["counts"]))
        assert all(w not in everything for w in windows(encoded, size=4))
    # every reply holds only secure-mode records: no metric, no weight
    for blobs in secure_sent.values():
        for blob in blobs:
            message = message_from_proto(ProtoMessage.FromString(blob))
            for key, record in message.content.items():
                assert not isinstance(record, MetricRecord)
                assert key in {SECAGG, MASKED, RecordKey.SITE}
                if isinstance(record, ConfigRecord) and key == RecordKey.SITE:
                    assert set(record) == {"site-name"}
    # what the server unmasked is exactly the sum of what the hospitals computed
    (pooled_row,) = [r for r in map(json.loads, (run / RunFolder.CURVES)
                     .read_text().splitlines()) if r["site"] is None]  # fmt: skip
    local = pool(
        EvalCounts.from_json(kept_at(run, f"hospital-{i}", "evaluate")[0]["counts"])
        for i in (1, 2, 3)
    )
    unmasked = EvalCounts.from_json(pooled_row)
    assert unmasked.num_examples == local.num_examples
    np.testing.assert_array_equal(unmasked.confusion, local.confusion)
    np.testing.assert_array_equal(unmasked.score_hist, local.score_hist)
    np.testing.assert_allclose(unmasked.calibration, local.calibration, atol=1e-6)
    assert unmasked.loss_sum == pytest.approx(local.loss_sum, abs=1e-6)
    example_weights = [
        kept_at(run, f"hospital-{i}", "train")[0]["weight"] for i in (1, 2, 3)
    ]
    assert rows(run, "secure-train")[0]["num-examples"] == sum(example_weights)


def test_a_hospital_killed_after_its_masked_input_is_recovered(
    config: FedwardConfig, tmp_path: Path
) -> None:
    plain_cfg, secure_cfg = plain_and_secure(config, tmp_path)
    grid = make_grid(secure_cfg)
    grid.die_after[102] = "train"  # hospital-3 answers the train message, then dies

    plain = federate(plain_cfg, make_grid(plain_cfg))
    secure = federate(secure_cfg, grid)

    (train,) = rows(tmp_path / "secure", "secure-train")
    assert train["outcome"] == "aggregated"
    assert train["in-sum"] == 3
    assert train["recovered-after-dropping"] == 1
    for key in plain:  # its update is in the sum, as in plain FedAvg
        diff = np.abs(secure[key].numpy() - plain[key].numpy()).max()
        assert diff <= train["quantisation-error-bound"] + 1e-7
    (evaluation,) = rows(tmp_path / "secure", "secure-evaluate")
    assert evaluation["in-sum"] == 2  # it is gone for the evaluation


def test_below_the_threshold_the_round_is_abandoned_and_the_run_goes_on(
    config: FedwardConfig, tmp_path: Path
) -> None:
    secure_cfg = config.replace(
        run_dir=str(tmp_path / "secure"), secure_aggregation=True, secure_threshold=3
    )
    grid = make_grid(secure_cfg)
    grid.die_after[102] = "train"  # its input arrives, but it cannot help unmask

    final = federate(secure_cfg, grid, rounds=2)

    outcomes = [
        (r["round"], r["scope"], r["outcome"])
        for r in rows(tmp_path / "secure", "secure-train")
        + rows(tmp_path / "secure", "secure-evaluate")
    ]
    assert sorted(outcomes) == [
        (1, "secure-evaluate", "aborted"), (1, "secure-train", "aborted"),
        (2, "secure-evaluate", "aborted"), (2, "secure-train", "aborted"),
    ]  # fmt: skip
    assert len(final) == 0  # no round produced new global weights
    took_part = rows(tmp_path / "secure", "participation")
    assert not any(r["took-part"] for r in took_part)
