"""The round loop: train, evaluate, save; the same loop for a new and a resumed run.

Flower's ``Strategy.start`` runs rounds with ``Grid.send_and_receive``, which
hands a strategy all replies of a round at once, and keeps nothing a crashed
server could continue from. :func:`run_rounds` calls the same strategy methods
(``configure_train``, ``aggregate_train``, ``configure_evaluate``,
``aggregate_evaluate``) with replies streamed one at a time
(:func:`~fedward.fl.streaming.stream_replies`), sends the weights in the run's
``transfer-dtype``, and after each complete round calls ``end_round``, which
saves what a resume needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedward.fl.protocol import MetricKey, encode_arrays
from fedward.fl.streaming import stream_replies

logger = logging.getLogger(__name__)


@runtime_checkable
class Resumable(Protocol):
    """A strategy whose server-side state can be saved and loaded back."""

    def state(self) -> dict[str, Any]:
        """Tensors, numbers and strings to continue from."""

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from what :meth:`state` returned."""


def strategy_state(strategy: Strategy) -> dict[str, Any]:
    """The strategy's state for a resume point (``{}`` for a stateless one)."""
    return strategy.state() if isinstance(strategy, Resumable) else {}


def run_rounds(
    grid: Grid,
    strategy: Strategy,
    arrays: ArrayRecord,
    *,
    rounds: range,
    timeout: float,
    transfer_dtype: str,
    run_id: str,
    end_round: Callable[[int, ArrayRecord], None],
    request: ConfigRecord | None = None,
) -> ArrayRecord:
    """Run ``rounds`` from the global weights ``arrays``; return the final weights.

    Parameters
    ----------
    grid
        Flower's grid of connected hospitals.
    strategy
        Configures each round and aggregates its replies.
    arrays
        Global weights before the first of ``rounds`` (float32).
    rounds
        The round numbers to run, e.g. ``range(3, 6)`` after a resume at round 2.
    timeout
        Seconds a round waits for replies.
    transfer_dtype
        ``float32``, ``float16`` or ``bfloat16``: how weights travel.
    run_id
        The run's id, sent with every instruction (the same after a resume).
    request
        What every train and evaluate instruction carries besides (e.g. the
        harmonisation scale).
    end_round
        Called with the round and its weights once the round is complete.
    """
    for server_round in rounds:
        sent = encode_arrays(arrays, transfer_dtype)
        config = ConfigRecord({**(request or {}), MetricKey.RUN_ID: run_id})
        messages = strategy.configure_train(server_round, sent, config, grid)
        replies = stream_replies(grid, messages, timeout)
        del messages
        new_arrays, _ = strategy.aggregate_train(server_round, replies)
        if new_arrays is None:
            logger.warning(
                "round %d: no usable update; weights unchanged", server_round
            )
        else:
            arrays = new_arrays
        sent = encode_arrays(arrays, transfer_dtype)
        config = ConfigRecord({**(request or {}), MetricKey.RUN_ID: run_id})
        messages = strategy.configure_evaluate(server_round, sent, config, grid)
        del sent
        strategy.aggregate_evaluate(
            server_round, stream_replies(grid, messages, timeout)
        )
        del messages
        end_round(server_round, arrays)
    return arrays
