"""Flower ``Message`` objects built by hand: the only transport tests stand in for."""

from __future__ import annotations

import time

from flwr.app import Message, Metadata, RecordDict


def instruction(content: RecordDict, node_id: int, message_type: str) -> Message:
    """A message as the ServerApp sends it to ``node_id``."""
    meta = Metadata(
        run_id=1,
        message_id=f"msg-{node_id}-{message_type}",
        src_node_id=0,
        dst_node_id=node_id,
        reply_to_message_id="",
        group_id="1",
        created_at=time.time(),
        ttl=3600.0,
        message_type=message_type,
    )
    # Flower builds messages with given metadata only internally; tests stand in
    # for the SuperLink here.
    message: Message = Message(content, metadata=meta)  # type: ignore[call-overload]
    return message


def reply(content: RecordDict, node_id: int, message_type: str) -> Message:
    """A reply from ``node_id`` as the ServerApp receives it."""
    return Message(content, reply_to=instruction(RecordDict(), node_id, message_type))
