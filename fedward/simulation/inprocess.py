"""A federation in one process: fedward's ServerApp and ClientApp, no Ray.

:class:`InProcessGrid` stands in for the transport only: it hands each message
to the real ClientApp of the node it is addressed to, after a round trip
through Flower's protobuf serialisation (as on the wire, so a hospital never
shares an object with the server), and returns the replies. The server side is
:func:`fedward.fl.server_app.run_federation` and the hospitals are
:func:`fedward.fl.client_app.make_client_app`, unchanged. Many short
federations (the benchmarks of ``benchmarks/``, tests of every strategy) then
cost no simulation-engine start-up; ``fedward simulate`` keeps Flower's own
engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import message_from_proto, message_to_proto
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

SERVER_NODE = 1  # Flower's SuperLink node id
CLIENT_ERROR = 1  # Flower's ErrorCode.CLIENT_APP_RAISED_EXCEPTION


def _wire(message: Message) -> Message:
    """The message as the other side receives it (serialised and parsed)."""
    return message_from_proto(message_to_proto(message))


class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApps called in this process.

    Parameters
    ----------
    client_app
        The hospitals' app.
    node_configs
        One node config per hospital (``partition-id``, ``num-partitions``, or
        ``data-path``), node ids 2, 3, ... in that order.
    run_config
        The run config every node's context carries.
    """

    def __init__(
        self,
        client_app: ClientApp,
        node_configs: Sequence[dict[str, Any]],
        run_config: dict[str, Any] | None = None,
        run_id: int = 1,
    ) -> None:
        self.client_app = client_app
        self.contexts = {
            SERVER_NODE + 1 + i: Context(
                run_id, SERVER_NODE + 1 + i, dict(cfg), RecordDict(), run_config or {}
            )
            for i, cfg in enumerate(node_configs)
        }
        self.run_id = run_id
        self._run: Run | None = None
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        """Record the run (Flower calls this before the ServerApp starts)."""
        self._run = run

    @property
    def run(self) -> Run:
        """The run, as set by :meth:`set_run`."""
        if self._run is None:
            raise RuntimeError("no run set")
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
        """Every hospital's node id."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message to its node's ClientApp now; keep the replies."""
        ids = []
        for message in messages:
            meta = message.metadata.__dict__
            meta.update(
                _message_id=uuid4().hex,
                _src_node_id=SERVER_NODE,
                _run_id=self.run_id,
                _created_at=time.time(),
            )
            incoming = _wire(message)
            context = self.contexts[message.metadata.dst_node_id]
            try:
                reply = self.client_app(incoming, context)
            except Exception as exc:  # the ClientApp's failure becomes an error reply
                logger.warning("node %d failed: %s", context.node_id, exc)
                error = Error(CLIENT_ERROR, f"{type(exc).__name__}: {exc}")
                reply = Message(error, reply_to=incoming)
            self._replies[message.metadata.message_id] = _wire(reply)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies to the given messages that have arrived."""
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver the messages and return every reply."""
        return self.pull_messages(self.push_messages(messages))


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
    # the identity Flower's ServerApp runtime gives its process (messages read it)
    TaskIdentity.task_id, TaskIdentity.run_id = 1, 1
    TaskIdentity.node_id = SERVER_NODE
    grid = InProcessGrid(
        make_client_app(config, hook=hook),
        [{"partition-id": i, "num-partitions": n} for i in range(n)],
        config.to_run_config(),
    )
    return run_federation(grid, config)
