"""What the secure-aggregation tests set up around fedward's in-process grid.

The grid is :class:`fedward.simulation.inprocess.InProcessGrid` in run
:data:`RUN_ID`: only the transport is replaced, every ClientApp, strategy and
secure step is the real one. A node can be made to die right after it answered
a given step (``grid.die_after``), as a hospital killed after sending its
masked input; the bytes of every message to and from each node are counted as
Flower serialises them.
"""

from __future__ import annotations

import pytest

RUN_ID = 7


@pytest.fixture
def server_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower sets in a ServerApp process, so that it can make messages."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", RUN_ID)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
