"""Everything a hospital sends in secure mode, and what the server sends it.

The secure-mode complement of :mod:`fedward.fl.protocol`. Per secure sum (one for
training, one for evaluation, each round) a hospital's replies hold only:

- ``query.secagg_advertise``: its key bundle: two fresh X25519 public keys, the
  SHA-256 of a fresh random seed, its node certificate and its signature of them;
- ``query.secagg_share``: one sealed share (ChaCha20-Poly1305) per peer, which
  only that peer can open;
- ``train`` / ``evaluate``: the masked vectors (``update``: uint32, one per model
  value; ``counts``: uint64) and its name; no weight, count or metric in clear;
- ``query.secagg_consistency``: its signature of the list of survivors;
- ``query.secagg_unmask``: its shares of the survivors' seeds and of the dropped
  hospitals' mask keys.

Node ids travel as strings (Flower's are unsigned 64-bit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType

from fedward.errors import SecureAggregationError
from fedward.fl.secagg.party import Session
from fedward.fl.secagg.quantise import Vectors

SECAGG = "secagg"  # the ConfigRecord of every secure-mode request and reply
MASKED = "masked"  # the ArrayRecord of a masked train or evaluate reply
STATE = "secagg"  # the hospital's context.state record


class Stage:
    """The query actions of the secure-sum steps a train/evaluate message lacks."""

    ADVERTISE = "secagg_advertise"
    SHARE = "secagg_share"
    CONSISTENCY = "secagg_consistency"
    UNMASK = "secagg_unmask"

    @staticmethod
    def message_type(action: str) -> str:
        """The Flower message type of an action (``query.<action>``)."""
        return f"{MessageType.QUERY}.{action}"


def _ids(nodes: Sequence[int]) -> list[str]:
    return [str(n) for n in nodes]


def _nodes(values: object) -> list[int]:
    if not isinstance(values, list):
        raise SecureAggregationError("a node list is malformed")
    return [int(v) for v in values]


def _bytes_list(values: object) -> list[bytes]:
    if not isinstance(values, list) or not all(isinstance(v, bytes) for v in values):
        raise SecureAggregationError("a list of byte strings is malformed")
    return list(values)


def secagg_record(msg: Message) -> ConfigRecord:
    """The secure-mode record of a message.

    Raises
    ------
    SecureAggregationError
        If the message has none.
    """
    record = msg.content.get(SECAGG)
    if not isinstance(record, ConfigRecord):
        raise SecureAggregationError("the message has no secure-aggregation record")
    return record


def session_of(msg: Message) -> Session:
    """The session a request names, checked (see :meth:`Session.from_json`)."""
    session = Session.from_json(str(secagg_record(msg).get("session", "")))
    if session.run_id != msg.metadata.run_id:
        raise SecureAggregationError("the session names another run")
    return session


# --- server -> hospital ---------------------------------------------------------------


def advertise_request(session: Session) -> ConfigRecord:
    """Step 1: the session."""
    return ConfigRecord({"session": session.to_json()})


def share_request(session: Session, bundles: Sequence[bytes]) -> ConfigRecord:
    """Step 2: every hospital's key bundle (U1)."""
    return ConfigRecord({"session": session.to_json(), "bundles": list(bundles)})


def read_share(record: ConfigRecord) -> list[bytes]:
    """The bundles of a :func:`share_request`."""
    return _bytes_list(record.get("bundles"))


def collect_request(
    session: Session, u2: Sequence[int], sealed: Mapping[int, bytes]
) -> ConfigRecord:
    """Step 3 (added to the train/evaluate message): U2 and the shares sealed for it."""
    senders = sorted(sealed)
    return ConfigRecord(
        {
            "session": session.to_json(),
            "u2": _ids(u2),
            "senders": _ids(senders),
            "shares": [sealed[s] for s in senders],
        }
    )


def read_collect(record: ConfigRecord) -> tuple[list[int], dict[int, bytes]]:
    """U2 and the sealed shares of a :func:`collect_request`."""
    senders = _nodes(record.get("senders"))
    return _nodes(record.get("u2")), dict(
        zip(senders, _bytes_list(record.get("shares")), strict=True)
    )


def consistency_request(session: Session, u3: Sequence[int]) -> ConfigRecord:
    """Step 4: the survivors (U3)."""
    return ConfigRecord({"session": session.to_json(), "u3": _ids(u3)})


def read_u3(record: ConfigRecord) -> list[int]:
    """The survivors of a :func:`consistency_request`."""
    return _nodes(record.get("u3"))


def unmask_request(
    session: Session, u3: Sequence[int], signatures: Mapping[int, bytes]
) -> ConfigRecord:
    """Step 5: the survivors and their signatures of that list."""
    signers = sorted(signatures)
    return ConfigRecord(
        {
            "session": session.to_json(),
            "u3": _ids(u3),
            "signers": _ids(signers),
            "signatures": [signatures[s] for s in signers],
        }
    )


def read_unmask(record: ConfigRecord) -> tuple[list[int], dict[int, bytes]]:
    """U3 and the signatures of an :func:`unmask_request`."""
    signers = _nodes(record.get("signers"))
    signatures = _bytes_list(record.get("signatures"))
    return _nodes(record.get("u3")), dict(zip(signers, signatures, strict=True))


# --- hospital -> server ---------------------------------------------------------------


def bundle_reply(bundle: bytes) -> ConfigRecord:
    """Step 1 reply."""
    return ConfigRecord({"bundle": bundle})


def shares_reply(sealed: Mapping[int, bytes]) -> ConfigRecord:
    """Step 2 reply: recipient -> sealed share."""
    return ConfigRecord({str(node): blob for node, blob in sealed.items()})


def masked_record(vectors: Vectors) -> ArrayRecord:
    """Step 3 reply: the masked vectors."""
    return ArrayRecord(
        {name: Array(np.ascontiguousarray(v)) for name, v in vectors.items()}
    )


def signature_reply(signature: bytes) -> ConfigRecord:
    """Step 4 reply."""
    return ConfigRecord({"signature": signature})


def revealed_reply(
    seeds: Mapping[int, bytes], keys: Mapping[int, bytes]
) -> ConfigRecord:
    """Step 5 reply: seed shares of survivors, mask-key shares of the dropped."""
    return ConfigRecord(
        {
            "seed-owners": _ids(sorted(seeds)),
            "seed-shares": [seeds[n] for n in sorted(seeds)],
            "key-owners": _ids(sorted(keys)),
            "key-shares": [keys[n] for n in sorted(keys)],
        }
    )


# --- what the server reads from replies -----------------------------------------------


def reply_bundle(msg: Message) -> bytes:
    """The bundle of a step 1 reply."""
    value = secagg_record(msg).get("bundle")
    if not isinstance(value, bytes):
        raise SecureAggregationError("no key bundle in the reply")
    return value


def reply_shares(msg: Message) -> dict[int, bytes]:
    """The sealed shares of a step 2 reply, by recipient."""
    record = secagg_record(msg)
    return {int(k): v for k, v in record.items() if isinstance(v, bytes)}


def reply_masked(msg: Message) -> Vectors:
    """The masked vectors of a step 3 reply."""
    record = msg.content.get(MASKED)
    if not isinstance(record, ArrayRecord):
        raise SecureAggregationError("no masked input in the reply")
    return {name: record[name].numpy() for name in record}


def reply_signature(msg: Message) -> bytes:
    """The signature of a step 4 reply."""
    value = secagg_record(msg).get("signature")
    if not isinstance(value, bytes):
        raise SecureAggregationError("no signature in the reply")
    return value


def reply_revealed(msg: Message) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """The seed shares and mask-key shares of a step 5 reply."""
    record = secagg_record(msg)
    seeds = zip(
        _nodes(record.get("seed-owners")),
        _bytes_list(record.get("seed-shares")),
        strict=True,
    )
    keys = zip(
        _nodes(record.get("key-owners")),
        _bytes_list(record.get("key-shares")),
        strict=True,
    )
    return dict(seeds), dict(keys)
