"""A federation in one process: fedward's ServerApp and ClientApp, no Ray.

:class:`InProcessGrid` stands in for the transport only: it hands each message
to the real ClientApp of the node it is addressed to, after a round trip
through Flower's protobuf serialisation (as on the wire, so a hospital never
shares an object with the server), and returns the replies. The server side is
:func:`fedward.fl.server_app.run_federation` (or a strategy's own
``Strategy.start``) and the hospitals are
:func:`fedward.fl.client_app.make_client_app`, unchanged. Many short
federations (the benchmarks of ``benchmarks/``, tests of every strategy,
resume, delivery and secure aggregation) then cost no simulation-engine
start-up; ``fedward simulate`` keeps Flower's own engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from uuid import uuid4

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict, UserConfig
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.proto.node_pb2 import NodeInfo
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from fedward.config import AttackConfig, FedwardConfig
from fedward.fl.client_app import make_client_app
from fedward.fl.server_app import run_federation
from fedward.runfolder import RunFolder
from fedward.simulation.attacks import Attacks, check_sites
from fedward.simulation.runner import site_names

logger = logging.getLogger(__name__)

SERVER_NODE = SUPERLINK_NODE_ID  # the sender of every instruction

ClientFn = Callable[[Message, Context], Message]
"""A ClientApp, or anything called like one (e.g. a node that only refuses)."""

NodeConfig = Mapping[str, bool | float | int | str]


def act_as_server(run_id: int = 1) -> None:
    """Give this process the identity Flower's runtime gives a ServerApp's.

    ``Message(...)`` reads it; without it a ServerApp cannot build messages.
    """
    TaskIdentity.task_id, TaskIdentity.run_id = 1, run_id
    TaskIdentity.node_id = SERVER_NODE


def over_the_wire(message: Message) -> tuple[Message, int]:
    """The message as the other side receives it (serialised, parsed); its bytes."""
    data = message_to_proto(message).SerializeToString()
    return message_from_proto(ProtoMessage.FromString(data)), len(data)


def step(message: Message) -> str:
    """The message type, with the stage of Flower's legacy SecAgg+ if it has one.

    What :attr:`InProcessGrid.die_after` is matched against, e.g. ``"train"``
    or ``"train.collect_masked_vectors"``.
    """
    kind = message.metadata.message_type
    legacy = message.content.get("secaggplus_configs")
    if isinstance(legacy, ConfigRecord) and "stage" in legacy:
        return f"{kind}.{legacy['stage']!s}"
    return kind


class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApps called in this process.

    A message is answered when the server pulls its reply, as if the reply had
    just arrived; :meth:`send_and_receive` pushes and pulls at once. So
    Flower's ``Strategy.start`` and fedward's streamed rounds
    (:func:`fedward.fl.streaming.stream_replies`) both work, one node's reply
    computed at a time. A ClientApp that raises answers with an error reply,
    as Flower's runtime does.

    Parameters
    ----------
    app
        The ClientApp every node runs, or one per node id (the ids of
        ``nodes``).
    nodes
        Each node's config (``partition-id``, ``num-partitions``,
        ``data-path``, ...): a sequence for node ids 2, 3, ... in that order,
        or a mapping from node id to config.
    run_config
        The run config every node's context carries.
    run_id
        The run's id: in every node's context and every instruction.
    before_answer
        Called with each instruction as its node receives it, just before the
        node answers. Raising there propagates out of the pull, so a
        ``BaseException`` stops the ServerApp as a crash mid-round would.

    Attributes
    ----------
    apps, contexts
        Each node's ClientApp and context, by node id.
    dead
        Nodes that never answer (nor are listed by :meth:`get_node_ids`): a
        message to one is left unanswered, and the server's timeout decides.
    die_after
        Node id to a :func:`step`: the node dies right after it answered a
        message of that step (e.g. a hospital killed after sending its
        masked input).
    received_bytes, sent_bytes
        Per node, the bytes of the messages it received and sent, as Flower
        serialises them.
    pulls
        How many times the server has pulled replies.
    """

    def __init__(
        self,
        app: ClientFn | Mapping[int, ClientFn],
        nodes: Sequence[NodeConfig] | Mapping[int, NodeConfig],
        run_config: UserConfig | None = None,
        *,
        run_id: int = 1,
        before_answer: Callable[[Message], None] | None = None,
    ) -> None:
        configs = (
            dict(nodes)
            if isinstance(nodes, Mapping)
            else {SERVER_NODE + 1 + i: cfg for i, cfg in enumerate(nodes)}
        )
        if isinstance(app, Mapping):
            if set(app) != set(configs):
                raise ValueError(
                    f"apps for nodes {sorted(app)}, configs for {sorted(configs)}"
                )
            self.apps = dict(app)
        else:
            self.apps = dict.fromkeys(configs, app)
        self.contexts = {
            node: Context(run_id, node, dict(cfg), RecordDict(), dict(run_config or {}))
            for node, cfg in configs.items()
        }
        self.run_id = run_id
        self.before_answer = before_answer
        self.dead: set[int] = set()
        self.die_after: dict[int, str] = {}
        self.received_bytes: dict[int, int] = dict.fromkeys(configs, 0)
        self.sent_bytes: dict[int, int] = dict.fromkeys(configs, 0)
        self.pulls = 0
        self._run = Run.create_empty(run_id)
        self._pending: dict[str, Message] = {}  # instructions not yet answered
        # no attribute ``state``: stream_replies would take this for Flower's
        # in-memory grid and pull every reply of a round at once

    def set_run(self, run: Run) -> None:
        """Record the run (Flower calls this before the ServerApp starts)."""
        self._run = run

    @property
    def run(self) -> Run:
        """The run, as set by :meth:`set_run` (an empty one of ``run_id`` before)."""
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """A message to one node (Flower's deprecated helper)."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """Every live node's id, in order."""
        return sorted(set(self.contexts) - self.dead)

    def get_nodes(self) -> Iterable[NodeInfo]:
        """Every live node, as Flower describes one."""
        return [NodeInfo(node_id=node) for node in self.get_node_ids()]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Address each message (as the SuperLink does); answer it when pulled."""
        ids = []
        for message in messages:
            if message.metadata.dst_node_id not in self.contexts:
                raise ValueError(f"no node {message.metadata.dst_node_id}")
            message.metadata.__dict__.update(
                _message_id=uuid4().hex,
                _src_node_id=SERVER_NODE,
                _run_id=self.run_id,
                _created_at=time.time(),
            )
            self._pending[message.metadata.message_id] = message
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies to the given messages, each computed now, in that order.

        A message to a dead node is dropped unanswered; one already answered
        (or never pushed) is skipped.
        """
        self.pulls += 1
        replies = []
        for message_id in list(message_ids):
            message = self._pending.pop(message_id, None)
            if message is not None and message.metadata.dst_node_id not in self.dead:
                replies.append(self._answer(message))
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver the messages; return every reply (none from a dead node)."""
        return self.pull_messages(self.push_messages(messages))

    def _answer(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        incoming, size = over_the_wire(message)
        self.received_bytes[node] += size
        if self.before_answer is not None:
            self.before_answer(incoming)
        try:
            reply = self.apps[node](incoming, self.contexts[node])
        except Exception as exc:  # the ClientApp's failure becomes an error reply
            logger.warning("node %d failed: %s", node, exc)
            error = Error(
                ErrorCode.CLIENT_APP_RAISED_EXCEPTION, f"{type(exc).__name__}: {exc}"
            )
            reply = Message(error, reply_to=incoming)
        reply.metadata.__dict__["_message_id"] = uuid4().hex  # the SuperLink's part
        reply, size = over_the_wire(reply)
        self.sent_bytes[node] += size
        if self.die_after.get(node) == step(incoming):
            self.dead.add(node)
        return reply


def run_in_process(
    config: FedwardConfig, attacks: Sequence[AttackConfig] = ()
) -> dict[str, Any]:
    """Run a prepared simulation config in this process; return its summary.

    Like :func:`fedward.simulation.runner.run` without Flower's simulation
    engine and without the export: the run folder gets the records, the
    weights and the summary.
    """
    check_sites(attacks, site_names(config))
    hook = Attacks(attacks, config.seed) if attacks else None
    if attacks:
        RunFolder(config.run_dir).write_json(
            RunFolder.ATTACKS, [a.to_mapping() for a in attacks]
        )
    n = config.num_hospitals
    act_as_server()
    grid = InProcessGrid(
        make_client_app(config, hook=hook),
        [{"partition-id": i, "num-partitions": n} for i in range(n)],
        config.to_run_config(),
    )
    return run_federation(grid, config)
