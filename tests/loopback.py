"""Hospitals reached in this process: fedward's own grid, as a resume test uses it.

The transport is :class:`fedward.simulation.inprocess.InProcessGrid`; every
hospital is fedward's own ClientApp with its own ``Context``, training and
evaluating for real on tiny data. A reply is computed when the server pulls it,
as if it had just arrived, so an instruction can stop the server mid-round.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Message
from flwr.clientapp import ClientApp

from fedward.simulation.inprocess import InProcessGrid, act_as_server


class ServerKilled(BaseException):
    """Raised before a hospital answers, to stop a ServerApp mid-round."""


def loopback_grid(
    app: ClientApp, num_nodes: int, kill: Callable[[Message], None] | None = None
) -> InProcessGrid:
    """``num_nodes`` simulated hospitals, partition ``i`` on node ``100 + i``.

    ``kill`` is called with each instruction before it is answered; raising
    :class:`ServerKilled` there stops the server like a crash.
    """
    act_as_server()  # who "this process" is, as Flower's engine sets it
    nodes = {
        100 + i: {"partition-id": i, "num-partitions": num_nodes}
        for i in range(num_nodes)
    }
    return InProcessGrid(app, nodes, before_answer=kill)
