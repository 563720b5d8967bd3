"""A Flower ``Grid`` that delivers messages to real ClientApps in this process.

The transport is the only stand-in: every hospital is fedward's own ClientApp
with its own ``Context``, training and evaluating for real on tiny data. A reply
is computed when the server pulls it, as if it had just arrived.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


class ServerKilled(BaseException):
    """Raised by :class:`LoopbackGrid` to stop a ServerApp mid-round."""


class LoopbackGrid(Grid):
    """``num_nodes`` simulated hospitals, partition ``i`` on node ``100 + i``.

    Parameters
    ----------
    app
        The ClientApp every node runs.
    num_nodes
        Simulated hospitals.
    kill
        Called with each instruction before it is answered; raising
        :class:`ServerKilled` there stops the server like a crash.
    """

    def __init__(
        self,
        app: ClientApp,
        num_nodes: int,
        kill: Callable[[Message], None] | None = None,
    ) -> None:
        self.app = app
        self.contexts = {
            100 + i: Context(
                1,
                100 + i,
                {"partition-id": i, "num-partitions": num_nodes},
                RecordDict(),
                {},
            )
            for i in range(num_nodes)
        }
        self.kill = kill
        self.pending: dict[str, Message] = {}
        self.pulls = 0
        # who "this process" is, as Flower's engine sets it for a ServerApp
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0

    def set_run(self, run: Run) -> None:
        return None

    @property
    def run(self) -> Run:
        return Run.create_empty(1)

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def get_nodes(self) -> Iterable[NodeInfo]:
        return [NodeInfo(node_id=n) for n in self.contexts]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            self.pending[msg.metadata.message_id] = msg
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self.pulls += 1
        replies = []
        for msg_id in list(message_ids):
            msg = self.pending.pop(msg_id, None)
            if msg is None:
                continue
            if self.kill is not None:
                self.kill(msg)
            replies.append(self.app(msg, self.contexts[msg.metadata.dst_node_id]))
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        ids = list(self.push_messages(messages))
        time.sleep(0)
        return list(self.pull_messages(ids))
