"""A grid that hands each message to an in-process ClientApp: the SuperLink's stand-in.

Only the transport is replaced: every ClientApp, strategy and secure step is the
real one. A node can be made to die right after it answered a given message type
(:func:`step`), as a hospital killed after sending its masked input; the bytes of
every message to and from each node are counted as Flower serialises them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping

import pytest
from flwr.app import ConfigRecord, Context, Error, Message, Metadata, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run

RUN_ID = 7


@pytest.fixture
def server_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower sets in a ServerApp process, so that it can make messages."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", RUN_ID)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def over_the_wire(message: Message) -> tuple[Message, int]:
    """The message as the receiver gets it (serialised and parsed) and its size."""
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage

    data = message_to_proto(message).SerializeToString()
    return message_from_proto(ProtoMessage.FromString(data)), len(data)


def step(message: Message) -> str:
    """The message type, with the stage of Flower's legacy SecAgg+ if it has one."""
    kind = message.metadata.message_type
    legacy = message.content.get("secaggplus_configs")
    if isinstance(legacy, ConfigRecord) and "stage" in legacy:
        return f"{kind}.{legacy['stage']!s}"
    return kind


class LocalGrid(Grid):
    """Delivers messages to ``apps`` by node id, each node with its own context."""

    def __init__(
        self,
        apps: Mapping[int, ClientApp],
        node_configs: Mapping[int, dict[str, bool | float | int | str]],
    ) -> None:
        self.apps = dict(apps)
        self.contexts = {
            node: Context(RUN_ID, node, dict(node_configs[node]), RecordDict(), {})
            for node in apps
        }
        self.dead: set[int] = set()
        self.die_after: dict[int, str] = {}
        self.sent_bytes: dict[int, int] = dict.fromkeys(apps, 0)
        self.received_bytes: dict[int, int] = dict.fromkeys(apps, 0)
        self._ids = itertools.count()
        self._run = Run.create_empty(RUN_ID)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return sorted(set(self.apps) - self.dead)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("send_and_receive delivers directly")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("send_and_receive delivers directly")

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            if node in self.dead:
                continue  # no answer: the round's timeout passes without it
            addressed = Message(  # type: ignore[call-overload]
                message.content,
                metadata=Metadata(
                    run_id=RUN_ID,
                    message_id=f"m{next(self._ids)}",
                    src_node_id=1,
                    dst_node_id=node,
                    reply_to_message_id="",
                    group_id=message.metadata.group_id,
                    created_at=time.time(),
                    ttl=3600.0,
                    message_type=message.metadata.message_type,
                ),
            )
            kind = step(addressed)
            addressed, size = over_the_wire(addressed)
            self.received_bytes[node] += size
            try:
                reply = self.apps[node](addressed, self.contexts[node])
            except Exception as exc:  # what Flower's runtime does with a raise
                reply = Message(Error(code=0, reason=str(exc)), reply_to=addressed)
            reply, size = over_the_wire(reply)
            self.sent_bytes[node] += size
            replies.append(reply)
            if self.die_after.get(node) == kind:
                self.dead.add(node)
        return replies
