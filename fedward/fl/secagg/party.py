"""A hospital's part in one secure sum, step by step (no Flower import).

The steps follow Bonawitz et al. (CCS 2017, the version secure against an active
server), one Flower message each:

1. :func:`advertise`: fresh X25519 keys (one pair to seal shares, one to agree
   masks) and a self-mask seed; the public keys and a hash of the seed, signed
   with the hospital's certified identity (:mod:`.identity`).
2. :func:`share`: check every peer's signature and certificate, then seal Shamir
   shares of the mask key and the seed for each peer (:mod:`.shares`).
3. :func:`receive` and :func:`masked_input`: open the shares sent to it, then
   mask its input with every peer that shared (:mod:`.masking`).
4. :func:`consistency`: sign the list of hospitals whose masked inputs the server
   says it holds.
5. :func:`unmask`: given at least ``threshold`` peers' signatures of that same
   list, reveal the seed shares of the survivors and the mask-key shares of the
   dropped, never both for one hospital, and only once.

:class:`PartyState` carries the secrets between steps; the ClientApp keeps it in
Flower's ``context.state``, which stays on the hospital's machine (the SuperNode's
memory in deployment, the simulation engine's in simulation).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fedward.errors import SecureAggregationError
from fedward.fl.secagg.identity import Identity, PeerTrust, common_name
from fedward.fl.secagg.masking import agree, mask, new_keypair, new_seed
from fedward.fl.secagg.quantise import Vectors
from fedward.fl.secagg.shares import seal, split_secret, unseal

KINDS = ("train", "evaluate")


def canonical(value: Any) -> bytes:
    """JSON with sorted keys and no spaces: the bytes that get signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def majority(parties: int) -> int:
    """The default threshold: more than half of ``parties``, at least 2."""
    return max(2, parties // 2 + 1)


@dataclass(frozen=True)
class Session:
    """One secure sum: the run, round and kind, its threshold and party count."""

    run_id: int
    server_round: int
    kind: str
    threshold: int
    parties: int

    @property
    def label(self) -> bytes:
        """Bytes naming this session inside every signature, key and mask."""
        return canonical(asdict(self))

    def to_json(self) -> str:
        """As sent in a message."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Session:
        """Parse and check a session sent by the server.

        Raises
        ------
        SecureAggregationError
            If it is malformed or its threshold is not more than half of the
            parties (a hospital never masks for a smaller threshold).
        """
        try:
            raw = json.loads(text)
            session = cls(**{k: raw[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError) as exc:
            raise SecureAggregationError(f"malformed session: {exc}") from None
        if session.kind not in KINDS or not all(
            isinstance(getattr(session, k), int) for k in ("threshold", "parties")
        ):
            raise SecureAggregationError(f"malformed session: {text}")
        if not majority(session.parties) <= session.threshold <= session.parties:
            raise SecureAggregationError(
                f"threshold {session.threshold} of {session.parties} hospitals is "
                "not more than half of them"
            )
        return session


@dataclass(frozen=True)
class Peer:
    """A hospital's advertised public keys and certificate."""

    node: int
    name: str
    c_pk: bytes  # seals shares
    s_pk: bytes  # agrees masks
    b_commit: bytes  # SHA-256 of the self-mask seed
    certificate: bytes

    @classmethod
    def parse(cls, bundle: bytes) -> tuple[Peer, dict[str, Any], bytes]:
        """The peer, its signed statement and signature, not yet verified.

        Raises
        ------
        SecureAggregationError
            If the bundle is malformed.
        """
        from cryptography import x509

        try:
            raw = json.loads(bundle)
            statement = raw["statement"]
            cert = raw["certificate"].encode()
            peer = cls(
                int(statement["node"]),
                common_name(x509.load_pem_x509_certificate(cert)),
                bytes.fromhex(statement["c-pk"]),
                bytes.fromhex(statement["s-pk"]),
                bytes.fromhex(statement["b-commit"]),
                cert,
            )
            return peer, statement, base64.b64decode(raw["signature"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SecureAggregationError(f"malformed key bundle: {exc}") from None

    @classmethod
    def verified(cls, bundle: bytes, trust: PeerTrust, session: Session) -> Peer:
        """The peer of a bundle whose certificate, signature and session check out.

        Raises
        ------
        SecureAggregationError
            If any of them does not.
        """
        peer, statement, signature = cls.parse(bundle)
        name = trust.verify(peer.certificate, signature, canonical(statement))
        if statement.get("session") != asdict(session):
            raise SecureAggregationError(f"'{name}' signed keys for another session")
        return peer


@dataclass
class PartyState:
    """What a hospital remembers between the steps of one secure sum."""

    session: Session
    me: int
    c_sk: bytes
    s_sk: bytes
    seed: bytes
    bundle_digest: str
    peers: dict[int, Peer] = field(default_factory=dict)
    held: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    u2: list[int] = field(default_factory=list)
    u3: list[int] = field(default_factory=list)
    revealed: bool = False

    def index(self, node: int) -> int:
        """The 1-based Shamir index of ``node``: its place in the sorted peers."""
        return sorted(self.peers).index(node) + 1

    def to_bytes(self) -> bytes:
        """Serialised for ``context.state``."""
        data = asdict(self)
        data["session"] = asdict(self.session)
        return json.dumps(data, default=_hex).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PartyState:
        """The state of :meth:`to_bytes`."""
        raw = json.loads(data)
        peers = {
            int(n): Peer(
                int(p["node"]),
                p["name"],
                bytes.fromhex(p["c_pk"]),
                bytes.fromhex(p["s_pk"]),
                bytes.fromhex(p["b_commit"]),
                bytes.fromhex(p["certificate"]),
            )
            for n, p in raw["peers"].items()
        }
        held = {
            int(n): (bytes.fromhex(s), bytes.fromhex(b))
            for n, (s, b) in raw["held"].items()
        }
        return cls(
            session=Session(**raw["session"]),
            me=int(raw["me"]),
            c_sk=bytes.fromhex(raw["c_sk"]),
            s_sk=bytes.fromhex(raw["s_sk"]),
            seed=bytes.fromhex(raw["seed"]),
            bundle_digest=raw["bundle_digest"],
            peers=peers,
            held=held,
            u2=[int(n) for n in raw["u2"]],
            u3=[int(n) for n in raw["u3"]],
            revealed=bool(raw["revealed"]),
        )


def _hex(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def advertise(
    session: Session, me: int, identity: Identity
) -> tuple[PartyState, bytes]:
    """Step 1: fresh keys and seed; the signed bundle of their public parts."""
    c_sk, c_pk = new_keypair()
    s_sk, s_pk = new_keypair()
    seed = new_seed()
    statement = {
        "session": asdict(session),
        "node": str(me),
        "c-pk": c_pk.hex(),
        "s-pk": s_pk.hex(),
        "b-commit": hashlib.sha256(seed).hexdigest(),
    }
    bundle = canonical(
        {
            "statement": statement,
            "certificate": identity.certificate_pem.decode(),
            "signature": base64.b64encode(identity.sign(canonical(statement))).decode(),
        }
    )
    digest = hashlib.sha256(bundle).hexdigest()
    return PartyState(session, me, c_sk, s_sk, seed, digest), bundle


def share(
    state: PartyState, bundles: Sequence[bytes], trust: PeerTrust
) -> dict[int, bytes]:
    """Step 2: check every peer, then seal shares of our secrets for each.

    Raises
    ------
    SecureAggregationError
        If a bundle does not verify, a node or name appears twice, our own
        bundle is missing or changed, or there are fewer peers than the threshold.
    """
    session = state.session
    peers: dict[int, Peer] = {}
    for bundle in bundles:
        peer = Peer.verified(bundle, trust, session)
        if peer.node in peers or peer.name in {p.name for p in peers.values()}:
            raise SecureAggregationError(f"'{peer.name}' advertised twice")
        if peer.node == state.me and (
            hashlib.sha256(bundle).hexdigest() != state.bundle_digest
        ):
            raise SecureAggregationError("our own key bundle came back changed")
        peers[peer.node] = peer
    if state.me not in peers:
        raise SecureAggregationError("our own key bundle is missing")
    if len(peers) < session.threshold:
        raise SecureAggregationError(
            f"{len(peers)} hospitals advertised keys, the threshold is "
            f"{session.threshold}"
        )
    state.peers = peers
    n, t = len(peers), session.threshold
    s_shares, b_shares = split_secret(state.s_sk, t, n), split_secret(state.seed, t, n)
    sealed: dict[int, bytes] = {}
    for node in sorted(peers):
        i = state.index(node) - 1
        if node == state.me:
            state.held[node] = (s_shares[i], b_shares[i])
            continue
        sealed[node] = seal(
            state.c_sk,
            peers[node].c_pk,
            session.label,
            state.me,
            node,
            s_shares[i] + b_shares[i],
        )
    return sealed


def receive(state: PartyState, u2: Sequence[int], sealed: Mapping[int, bytes]) -> None:
    """Step 3a: open the shares every other hospital of ``u2`` sealed for us.

    Raises
    ------
    SecureAggregationError
        If ``u2`` is not a set of our peers holding us and at least the
        threshold, or a share is missing or does not authenticate.
    """
    u2 = sorted(set(u2))
    if not set(u2) <= set(state.peers) or state.me not in u2:
        raise SecureAggregationError("the server named hospitals that did not share")
    if len(u2) < state.session.threshold:
        raise SecureAggregationError(f"only {len(u2)} hospitals shared their keys")
    for node in u2:
        if node == state.me:
            continue
        if node not in sealed:
            raise SecureAggregationError(f"no share from '{state.peers[node].name}'")
        plain = unseal(
            state.c_sk,
            state.peers[node].c_pk,
            state.session.label,
            node,
            state.me,
            sealed[node],
        )
        half = len(plain) // 2
        state.held[node] = (plain[:half], plain[half:])
    state.u2 = u2


def masked_input(state: PartyState, values: Vectors) -> Vectors:
    """Step 3b: our input plus the self mask and a pairwise mask per peer in ``u2``."""
    secrets = {
        node: agree(state.s_sk, state.peers[node].s_pk)
        for node in state.u2
        if node != state.me
    }
    return mask(values, state.me, state.seed, secrets, state.session.label)


def survivors_statement(session: Session, u3: Sequence[int]) -> bytes:
    """What each hospital signs in the consistency check."""
    return canonical({"session": asdict(session), "survivors": sorted(u3)})


def consistency(state: PartyState, u3: Sequence[int], identity: Identity) -> bytes:
    """Step 4: sign the list of hospitals whose masked inputs the server holds.

    Raises
    ------
    SecureAggregationError
        If the list is not part of ``u2``, lacks us, or is below the threshold.
    """
    u3 = sorted(set(u3))
    if not set(u3) <= set(state.u2) or state.me not in u3:
        raise SecureAggregationError(
            "the survivors named are not hospitals that shared"
        )
    if len(u3) < state.session.threshold:
        raise SecureAggregationError(f"only {len(u3)} masked inputs arrived")
    state.u3 = u3
    return identity.sign(survivors_statement(state.session, u3))


def unmask(
    state: PartyState,
    u3: Sequence[int],
    signatures: Mapping[int, bytes],
    trust: PeerTrust,
) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Step 5: the seed shares of survivors and mask-key shares of dropped peers.

    Raises
    ------
    SecureAggregationError
        If we already revealed, the list differs from the one we signed, or
        fewer than ``threshold`` peers signed that same list.
    """
    if state.revealed:
        raise SecureAggregationError("shares of this round were already revealed")
    if sorted(set(u3)) != state.u3:
        raise SecureAggregationError("the survivors differ from the list we signed")
    statement = survivors_statement(state.session, state.u3)
    valid = 0
    for node, signature in signatures.items():
        peer = state.peers.get(node)
        if peer is None or node not in state.u3:
            continue
        try:
            trust.verify(peer.certificate, signature, statement)
        except SecureAggregationError:
            continue
        valid += 1
    if valid < state.session.threshold:
        raise SecureAggregationError(
            f"{valid} hospitals confirmed the survivors, the threshold is "
            f"{state.session.threshold}"
        )
    state.revealed = True
    seeds = {node: state.held[node][1] for node in state.u3}
    keys = {node: state.held[node][0] for node in state.u2 if node not in state.u3}
    return seeds, keys
