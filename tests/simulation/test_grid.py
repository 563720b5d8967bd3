"""The in-process grid's transport on its own: toy ClientApps, no training."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from fedward.fl.streaming import stream_replies
from fedward.simulation.inprocess import InProcessGrid


@pytest.fixture(autouse=True)
def server_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def echo(message: Message, context: Context) -> Message:
    """Answers with its node id and partition, in the node's own context."""
    content = RecordDict(
        {"who": ConfigRecord({"node": context.node_id, **context.node_config})}
    )
    return Message(content, reply_to=message)


def fails(message: Message, context: Context) -> Message:
    raise RuntimeError("no data here")


def to(grid: InProcessGrid, kind: str = "train") -> list[Message]:
    return [Message(RecordDict(), node, kind) for node in grid.get_node_ids()]


def node_of(reply: Message) -> int:
    record = reply.content["who"]
    assert isinstance(record, ConfigRecord)
    node = record["node"]
    assert isinstance(node, int)
    return node


def test_a_reply_is_computed_when_pulled_after_the_hook() -> None:
    seen: list[int] = []
    grid = InProcessGrid(
        echo,
        [{"partition-id": i} for i in range(3)],
        before_answer=lambda m: seen.append(m.metadata.dst_node_id),
    )

    ids = list(grid.push_messages(to(grid)))

    assert list(grid.get_node_ids()) == [2, 3, 4]
    assert seen == []  # nothing answered before the server pulls
    (second,) = grid.pull_messages([ids[1]])
    assert seen == [3]
    assert node_of(second) == 3
    assert second.metadata.src_node_id == 3
    assert second.metadata.reply_to_message_id == ids[1]
    assert [node_of(r) for r in grid.pull_messages(ids)] == [2, 4]
    assert list(grid.pull_messages(ids)) == []  # each reply arrives once
    assert grid.pulls == 3
    assert [node_of(r) for r in grid.send_and_receive(to(grid))] == [2, 3, 4]


def test_a_raising_app_answers_with_an_error_and_bytes_are_counted() -> None:
    grid = InProcessGrid({5: echo, 9: fails}, {5: {}, 9: {}}, run_id=7)

    ok, failed = grid.send_and_receive(to(grid))

    assert node_of(ok) == 5
    assert ok.metadata.run_id == 7
    assert failed.has_error()
    assert failed.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert failed.error.reason == "RuntimeError: no data here"
    assert failed.metadata.src_node_id == 9
    assert all(grid.received_bytes[n] > 0 for n in (5, 9))
    assert all(grid.sent_bytes[n] > 0 for n in (5, 9))


def test_apps_must_match_the_nodes() -> None:
    with pytest.raises(ValueError, match="apps for nodes"):
        InProcessGrid({5: echo}, {5: {}, 6: {}})


def test_a_node_dies_after_its_step_and_dead_nodes_never_answer() -> None:
    grid = InProcessGrid(echo, [{}, {}, {}])
    grid.die_after[3] = "train"
    grid.dead.add(4)

    evaluated = grid.send_and_receive(to(grid, "evaluate"))
    trained = grid.send_and_receive(to(grid))
    after = grid.send_and_receive(to(grid))

    assert [node_of(r) for r in evaluated] == [2, 3]
    assert [node_of(r) for r in trained] == [2, 3]
    assert [node_of(r) for r in after] == [2]
    assert list(grid.get_node_ids()) == [2]


def test_streamed_replies_come_one_at_a_time_and_a_dead_node_times_out() -> None:
    answered: list[int] = []
    grid = InProcessGrid(
        echo,
        [{}, {}, {}],
        before_answer=lambda m: answered.append(m.metadata.dst_node_id),
    )
    messages = to(grid)
    grid.dead.add(3)

    stream = stream_replies(grid, messages, timeout=0.05, poll=0.01)

    assert node_of(next(stream)) == 2
    assert answered == [2]  # the next node has not been asked yet
    assert [node_of(r) for r in stream] == [4]
    assert answered == [2, 4]
