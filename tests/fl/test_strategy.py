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

from fedward.config import FedwardConfig
from fedward.fl.protocol import MetricKey, RecordKey, counts_to_metrics
from fedward.fl.recorder import RunRecorder
from fedward.fl.strategies import FedwardFedAvg
from fedward.metrics.counts import EvalCounts
from tests.messages import reply

MetricValue = int | float | list[int] | list[float]
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


def counts(labels: list[int], preds: list[int], loss_sum: float = 1.0) -> EvalCounts:
    probs = np.where(np.eye(2)[preds] == 1, 0.8, 0.2)
    return EvalCounts.of_batch(probs, np.array(labels), loss_sum)


def eval_reply(node: int, metrics: dict[str, MetricValue]) -> Message:
    content = RecordDict(
        {
            RecordKey.METRICS: MetricRecord(metrics),
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


def test_global_evaluation_pools_the_sites_counts(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    one = counts([0] * 50 + [1] * 50, [0] * 50 + [0] * 10 + [1] * 40, loss_sum=30.0)
    two = counts([0] * 5 + [1] * 5, [0, 0, 1, 1, 1, 0, 1, 1, 1, 1], loss_sum=5.0)

    metrics = s.aggregate_evaluate(
        1,
        [
            eval_reply(1, dict(counts_to_metrics(one))),
            eval_reply(2, dict(counts_to_metrics(two))),
        ],
    )

    assert metrics is not None
    assert metrics["accuracy"] == pytest.approx((50 + 40 + 2 + 4) / 110)
    assert metrics["recall/opacity"] == pytest.approx((40 + 4) / (50 + 5))
    assert metrics["loss"] == pytest.approx(35.0 / 110)
    assert metrics["auroc"] == pytest.approx((one + two).figures(CLASSES)["auroc"])
    sites = {r["site"]: r for r in s.recorder.rows if r["scope"] == "site"}
    assert sites["h2"]["accuracy"] == pytest.approx(6 / 10)
    assert (tmp_path / "curves.jsonl").read_text().count("score-histogram") == 3


def test_inconsistent_evaluation_reports_are_ignored(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    good = dict(counts_to_metrics(counts([0] * 5 + [1] * 5, [0] * 5 + [1] * 5)))
    negative = {**good, MetricKey.CONFUSION: [-1, 2, 0, 9]}
    wrong_size = {**good, MetricKey.CONFUSION: [1, 2, 3]}

    metrics = s.aggregate_evaluate(
        1,
        [eval_reply(1, good), eval_reply(2, negative), eval_reply(3, wrong_size)],
    )

    assert metrics is not None
    assert metrics["num-examples"] == 10
    assert metrics["accuracy"] == 1.0
