"""Replies one at a time, as they arrive: the Flower side of streaming aggregation.

Flower's ``Grid.send_and_receive`` returns a round's replies together, so a
strategy fed by it holds every hospital's weights at once. :func:`stream_replies`
pushes the messages with ``Grid.push_messages`` and then pulls each reply by its
own message id with ``Grid.pull_messages``, yielding it before pulling the next:
a strategy that folds each reply into a running sum
(:class:`fedward.learning.aggregation.RunningMean`) and lets go of it holds one
reply at a time, whatever the number of hospitals.

What is left outside the ServerApp: replies that arrive while the server is busy
wait in the SuperLink (in simulation, in the engine's in-memory link state) until
they are pulled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from flwr.app import Message
from flwr.serverapp import Grid

logger = logging.getLogger(__name__)

# pause between sweeps that found no reply: Flower's in-memory grid (simulation)
# answers a pull in microseconds, a SuperLink over HTTP in milliseconds
IN_MEMORY_POLL = 0.1
REMOTE_POLL = 1.0


def stream_replies(
    grid: Grid,
    messages: Iterable[Message],
    timeout: float,
    *,
    poll: float | None = None,
) -> Iterator[Message]:
    """Send ``messages``; yield each reply once it has arrived, until all did.

    With Flower's in-memory grid (simulation) every reply that has arrived is
    already in memory, so a sweep pulls them all and yields them in the order
    they were created: an engine that answers in a fixed order gives a fixed
    order here too. Any other grid (a SuperLink) is asked for one reply at a
    time, hospitals in node-id order, so that at most one reply is held. A
    hospital that has not answered after ``timeout`` seconds is left out and
    the round goes on with the others, as with ``Grid.send_and_receive``.
    """
    messages = list(messages)
    ids = list(grid.push_messages(messages))  # in the order of the messages
    if len(ids) != len(messages):  # Flower returns [] for a payload too large
        logger.warning("%d of %d messages were not sent", len(messages) - len(ids),
                       len(messages))  # fmt: skip
    pending = {
        msg_id: msg.metadata.dst_node_id
        for msg_id, msg in zip(ids, messages, strict=False)
        if msg_id
    }
    del messages
    sent = len(pending)
    in_memory = hasattr(grid, "state")  # flwr's InMemoryGrid
    if poll is None:
        poll = IN_MEMORY_POLL if in_memory else REMOTE_POLL
    deadline = time.monotonic() + timeout
    while pending:
        found = _pull(grid, pending, everything=in_memory)
        if not found:
            if time.monotonic() >= deadline:
                logger.warning(
                    "%d of %d hospitals did not answer within %.0f s; going on "
                    "without them",
                    len(pending),
                    sent,
                    timeout,
                )
                return
            time.sleep(poll)
            continue
        found.sort(key=lambda m: (m.metadata.created_at, m.metadata.src_node_id))
        found.reverse()
        while found:
            reply = found.pop()
            pending.pop(reply.metadata.reply_to_message_id, None)
            yield reply
            del reply


def _pull(grid: Grid, pending: dict[str, int], *, everything: bool) -> list[Message]:
    if everything:
        return list(grid.pull_messages(list(pending)))
    for msg_id in sorted(pending, key=pending.__getitem__):  # by hospital node id
        replies = list(grid.pull_messages([msg_id]))
        if replies:
            return replies
    return []
