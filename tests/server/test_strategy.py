from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

from fedward.common.config import FedwardConfig
from fedward.common.keys import MetricKey, RecordKey
from fedward.server.report import RunRecorder
from fedward.server.strategy import FedwardFedAvg
from tests.messages import reply

CLASSES = ["normal", "opacity"]


def strategy(tmp_path: Path) -> FedwardFedAvg:
    recorder = RunRecorder(tmp_path, FedwardConfig())
    return FedwardFedAvg(recorder=recorder, class_names=CLASSES)


def arrays(value: float) -> ArrayRecord:
    return ArrayRecord(
        torch_state_dict={"w": torch.full((2, 3), value), "b": torch.full((3,), value)}
    )


def train_reply(node: int, weights: ArrayRecord, n: int) -> Message:
    content = RecordDict(
        {
            RecordKey.ARRAYS: weights,
            RecordKey.METRICS: MetricRecord(
                {MetricKey.NUM_EXAMPLES: n, MetricKey.TRAIN_LOSS: float(node)}
            ),
            RecordKey.SITE: ConfigRecord({MetricKey.SITE_NAME: f"h{node}"}),
        }
    )
    return reply(content, node, MessageType.TRAIN)


def eval_reply(node: int, cm: list[int], loss_sum: float = 1.0) -> Message:
    metrics = MetricRecord(
        {
            MetricKey.NUM_EXAMPLES: sum(cm),
            MetricKey.LOSS_SUM: loss_sum,
            MetricKey.CONFUSION: cm,
        }
    )
    content = RecordDict(
        {
            RecordKey.METRICS: metrics,
            RecordKey.SITE: ConfigRecord({MetricKey.SITE_NAME: f"h{node}"}),
        }
    )
    return reply(content, node, MessageType.EVALUATE)


def test_fedavg_weights_by_example_count(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    s._sent = arrays(0.0)
    replies = [train_reply(1, arrays(1.0), 10), train_reply(2, arrays(4.0), 30)]

    new, metrics = s.aggregate_train(1, replies)

    assert new is not None
    assert metrics is not None
    assert np.allclose(new["w"].numpy(), (1.0 * 10 + 4.0 * 30) / 40)
    assert metrics[MetricKey.TRAIN_LOSS] == pytest.approx((1 * 10 + 2 * 30) / 40)


def test_bad_updates_are_rejected_and_recorded(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    s._sent = arrays(0.0)
    wrong_shape = ArrayRecord(torch_state_dict={"w": torch.ones(4), "b": torch.ones(3)})
    replies = [
        train_reply(1, arrays(2.0), 10),
        train_reply(2, arrays(float("nan")), 10),
        train_reply(3, wrong_shape, 10),
        train_reply(4, arrays(9.0), 0),  # no examples: weightless
    ]

    new, _ = s.aggregate_train(1, replies)

    assert new is not None
    assert np.allclose(new["w"].numpy(), 2.0)
    rejected = [r for r in s.recorder.rows if r["scope"] == "rejected"]
    assert sorted(r["site"] for r in rejected) == ["h2", "h3", "h4"]


def test_global_evaluation_sums_confusion_matrices(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    replies = [
        eval_reply(1, [50, 0, 10, 40], loss_sum=30.0),
        eval_reply(2, [2, 3, 1, 4], loss_sum=5.0),
    ]

    metrics = s.aggregate_evaluate(1, replies)

    assert metrics is not None
    assert metrics["accuracy"] == pytest.approx((50 + 40 + 2 + 4) / 110)
    assert metrics["recall/opacity"] == pytest.approx((40 + 4) / (50 + 5))
    assert metrics["loss"] == pytest.approx(35.0 / 110)
    sites = {r["site"]: r for r in s.recorder.rows if r["scope"] == "site"}
    assert sites["h2"]["accuracy"] == pytest.approx(6 / 10)


def test_inconsistent_evaluation_reports_are_ignored(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    replies = [
        eval_reply(1, [5, 0, 0, 5]),
        eval_reply(2, [-1, 2, 0, 3]),  # negative count
        eval_reply(3, [1, 2, 3]),  # wrong size
    ]

    metrics = s.aggregate_evaluate(1, replies)

    assert metrics is not None
    assert metrics["num-examples"] == 10
    assert metrics["accuracy"] == 1.0
