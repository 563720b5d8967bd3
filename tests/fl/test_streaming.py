"""Replies streamed one at a time into FedAvg: same mean, one reply held."""

from __future__ import annotations

import io
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

from fedward.config import FedwardConfig
from fedward.errors import WeightsError
from fedward.fl.protocol import (
    MetricKey,
    RecordKey,
    array_values,
    encode_state,
    state_from_arrays,
)
from fedward.fl.recorder import RunRecorder
from fedward.fl.strategies import FedwardFedAvg
from fedward.fl.streaming import stream_replies
from tests.messages import instruction, reply


def strategy(tmp_path: Path) -> FedwardFedAvg:
    recorder = RunRecorder(tmp_path, FedwardConfig())
    return FedwardFedAvg(recorder=recorder, class_names=["normal", "opacity"])


def weights(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "conv": torch.randn(8, 3, 3, 3, generator=gen),
        "dense": torch.randn(64, 32, generator=gen),
        "steps": torch.tensor(seed, dtype=torch.int64),
    }


def train_reply(node: int, arrays: ArrayRecord, n: int) -> Message:
    content = RecordDict(
        {
            RecordKey.ARRAYS: arrays,
            RecordKey.METRICS: MetricRecord(
                {MetricKey.NUM_EXAMPLES: n, MetricKey.TRAIN_LOSS: 0.1 * node}
            ),
            RecordKey.SITE: ConfigRecord({MetricKey.SITE_NAME: f"h{node}"}),
        }
    )
    return reply(content, node, MessageType.TRAIN)


def test_streamed_fedavg_matches_flowers_fedavg(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    s._sent = ArrayRecord(torch_state_dict=weights(0))
    sizes = [13, 40, 7, 25]
    replies = [
        train_reply(i, ArrayRecord(torch_state_dict=weights(i)), n)
        for i, n in enumerate(sizes, 1)
    ]

    ours, metrics = s.aggregate_train(1, iter(replies))
    flowers, _ = FedAvg(arrayrecord_key=RecordKey.ARRAYS).aggregate_train(1, replies)

    assert ours is not None
    assert flowers is not None
    assert metrics is not None
    for key in ("conv", "dense"):
        np.testing.assert_allclose(
            ours[key].numpy(), flowers[key].numpy(), rtol=0, atol=1e-6
        )
    assert ours["steps"].numpy().dtype == np.int64
    expected_loss = sum(0.1 * i * n for i, n in enumerate(sizes, 1)) / sum(sizes)
    assert metrics[MetricKey.TRAIN_LOSS] == pytest.approx(expected_loss)


class Nodes:
    """What ``FedAvg.configure_train`` asks a grid: the connected node ids."""

    def __init__(self) -> None:
        # who "this process" is, as Flower's engine sets it for a ServerApp
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0

    def get_node_ids(self) -> list[int]:
        return [1, 2, 3, 4]


def test_with_the_counts_known_ahead_the_mean_is_flowers_to_the_bit(
    tmp_path: Path,
) -> None:
    s = strategy(tmp_path)
    sizes = {1: 13, 2: 40, 3: 7, 4: 25}
    for node, n in sizes.items():
        s.expect_examples(node, n)
    start = ArrayRecord(torch_state_dict=weights(0))
    s.configure_train(1, start, ConfigRecord(), Nodes())  # type: ignore[arg-type]
    replies = [
        train_reply(i, ArrayRecord(torch_state_dict=weights(i)), n)
        for i, n in sizes.items()
    ]

    ours, _ = s.aggregate_train(1, iter(replies))
    flowers, _ = FedAvg(arrayrecord_key=RecordKey.ARRAYS).aggregate_train(1, replies)

    assert ours is not None
    assert flowers is not None
    for key in ("conv", "dense"):
        np.testing.assert_array_equal(ours[key].numpy(), flowers[key].numpy())


def test_a_hospital_that_drops_out_does_not_skew_the_mean(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    for node in (1, 2, 3, 4):
        s.expect_examples(node, 10 * node)
    s.configure_train(1, ArrayRecord(), ConfigRecord(), Nodes())  # type: ignore[arg-type]
    s._sent = ArrayRecord(torch_state_dict=weights(0))
    replies = [
        train_reply(i, ArrayRecord(torch_state_dict=weights(i)), 10 * i)
        for i in (1, 2, 4)  # 3 never answers
    ]

    ours, _ = s.aggregate_train(1, iter(replies))

    assert ours is not None
    exact = torch.stack([weights(i)["dense"].double() * 10 * i for i in (1, 2, 4)])
    exact = exact.sum(0) / 70
    np.testing.assert_allclose(ours["dense"].numpy(), exact.numpy(), atol=1e-6)


def test_only_one_reply_is_alive_while_averaging(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    s._sent = ArrayRecord(torch_state_dict=weights(0))
    alive: list[weakref.ref[ArrayRecord]] = []
    most = 0

    def arriving() -> Iterator[Message]:
        nonlocal most
        for i in range(1, 21):
            most = max(most, sum(ref() is not None for ref in alive))
            arrays = ArrayRecord(torch_state_dict=weights(i))
            alive.append(weakref.ref(arrays))
            yield train_reply(i, arrays, 10)
            del arrays

    new, _ = s.aggregate_train(1, arriving())

    assert new is not None
    assert most <= 1  # the previous reply was let go before the next one came
    mean = torch.stack([weights(i)["dense"] for i in range(1, 21)]).mean(0)
    np.testing.assert_allclose(new["dense"].numpy(), mean.numpy(), atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_replies_average_into_float32(
    tmp_path: Path, dtype: str
) -> None:
    s = strategy(tmp_path)
    s._sent = encode_state(weights(0), dtype)
    replies = [train_reply(i, encode_state(weights(i), dtype), 10) for i in (1, 2)]

    new, _ = s.aggregate_train(1, replies)

    assert new is not None
    assert new["dense"].numpy().dtype == np.float32
    mean = (weights(1)["dense"] + weights(2)["dense"]) / 2
    tolerance = 1e-2 if dtype == "bfloat16" else 2e-3
    np.testing.assert_allclose(new["dense"].numpy(), mean.numpy(), atol=tolerance)


def test_a_non_finite_bfloat16_update_is_rejected(tmp_path: Path) -> None:
    s = strategy(tmp_path)
    s._sent = encode_state(weights(0), "bfloat16")
    bad = weights(2)
    bad["dense"][0, 0] = float("nan")
    replies = [
        train_reply(1, encode_state(weights(1), "bfloat16"), 10),
        train_reply(2, encode_state(bad, "bfloat16"), 10),
    ]

    new, _ = s.aggregate_train(1, replies)

    assert new is not None
    got = state_from_arrays(new)["dense"]
    assert torch.allclose(got, weights(1)["dense"], atol=1e-2)
    assert [r["site"] for r in s.recorder.rows if r["scope"] == "rejected"] == ["h2"]


def test_fedavg_keeps_no_state(tmp_path: Path) -> None:
    s = strategy(tmp_path)

    assert s.state() == {}
    s.load_state({})
    with pytest.raises(WeightsError):
        s.load_state({"moment": np.ones(1)})


# --- stream_replies over a grid (the transport is the only stand-in) ----------------


class SlowGrid:
    """Hospital ``n`` answers ``n * delay`` seconds after the push; ``None`` never."""

    def __init__(self, delays: dict[int, float | None], in_memory: bool) -> None:
        self.delays = delays
        self.sent: dict[str, Message] = {}
        self.pushed_at = 0.0
        self.calls: list[int] = []
        if in_memory:
            self.state = object()  # what tells Flower's in-memory grid apart

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        self.pushed_at = time.monotonic()
        ids = []
        for msg in messages:
            msg_id = f"m{msg.metadata.dst_node_id}"
            msg.metadata.__dict__["_message_id"] = msg_id  # as a real grid does
            self.sent[msg_id] = msg
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        ids = list(message_ids)
        self.calls.append(len(ids))
        now = time.monotonic() - self.pushed_at
        ready = []
        for msg_id in ids:
            delay = self.delays[self.sent[msg_id].metadata.dst_node_id]
            if delay is not None and now >= delay:
                ready.append(Message(RecordDict(), reply_to=self.sent.pop(msg_id)))
        return ready


def messages(nodes: Iterable[int]) -> list[Message]:
    return [instruction(RecordDict(), n, MessageType.TRAIN) for n in nodes]


@pytest.mark.parametrize("in_memory", [True, False])
def test_replies_come_as_they_arrive(in_memory: bool) -> None:
    grid = SlowGrid({1: 0.2, 2: 0.0, 3: 0.4}, in_memory)

    got = [
        m.metadata.src_node_id
        for m in stream_replies(grid, messages([1, 2, 3]), 5.0, poll=0.01)  # type: ignore[arg-type]
    ]

    assert got == [2, 1, 3]
    if not in_memory:
        assert max(grid.calls) == 1  # asked for one reply at a time


def test_a_hospital_that_never_answers_is_left_out() -> None:
    grid = SlowGrid({1: 0.0, 2: None}, in_memory=True)
    start = time.monotonic()

    got = list(stream_replies(grid, messages([1, 2]), 0.3, poll=0.01))  # type: ignore[arg-type]

    assert [m.metadata.src_node_id for m in got] == [1]
    assert 0.3 <= time.monotonic() - start < 2.0


def test_the_in_memory_engine_order_is_kept() -> None:
    grid = SlowGrid({1: 0.0, 2: 0.0, 3: 0.0}, in_memory=True)
    batch = messages([3, 1, 2])

    got = [m.metadata.src_node_id for m in stream_replies(grid, batch, 5.0, poll=0.01)]  # type: ignore[arg-type]

    assert got == [3, 1, 2]  # replies created in the order they were answered


def test_an_array_of_python_objects_is_refused() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    evil = Array("object", (1,), "numpy.ndarray", buffer.getvalue())

    with pytest.raises(WeightsError, match="objects"):
        array_values(evil)


def test_screened_updates_wait_on_disk_and_an_outlier_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedward.fl.strategies.screening import Screen

    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill))
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR is read again
    recorder = RunRecorder(tmp_path / "run", FedwardConfig())
    s = FedwardFedAvg(
        recorder=recorder,
        class_names=["normal", "opacity"],
        screen=Screen(norm_bound=10.0),
    )
    assert s.streams
    base = weights(0)
    s._sent = ArrayRecord(torch_state_dict=base)

    def near(seed: int, scale: float) -> dict[str, torch.Tensor]:
        w = weights(seed)
        return {
            k: base[k] + scale * (w[k] - base[k]) if v.is_floating_point() else v
            for k, v in w.items()
        }

    honest = {i: near(i, 0.01) for i in (1, 2, 3)}
    sizes = {1: 10, 2: 30, 3: 20, 4: 40}
    updates = {**honest, 4: near(4, 5.0)}  # 500x the others' update norm
    replies = (
        train_reply(i, ArrayRecord(torch_state_dict=updates[i]), sizes[i])
        for i in (1, 2, 3, 4)
    )

    new, _ = s.aggregate_train(1, replies)

    assert new is not None
    total = sum(sizes[i] for i in honest)
    expected = sum(honest[i]["dense"] * sizes[i] / total for i in honest)
    torch.testing.assert_close(state_from_arrays(new)["dense"], expected)
    rejected = [r for r in recorder.rows if r["scope"] == "rejected"]
    assert [r["site"] for r in rejected] == ["h4"]
    assert "median" in rejected[0]["problems"][0]
    assert list(spill.iterdir()) == []  # the waiting updates are removed
