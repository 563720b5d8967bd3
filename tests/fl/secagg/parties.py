"""Hospitals running the secure-sum steps in one process (the server relays)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fedward.fl.secagg import party
from fedward.fl.secagg.aggregator import SecureSum
from fedward.fl.secagg.identity import Identity, RunLocalCA
from fedward.fl.secagg.party import PartyState, Session
from fedward.fl.secagg.quantise import Vectors


def identities(tmp: Path, count: int) -> tuple[RunLocalCA, dict[int, Identity]]:
    ca = RunLocalCA(tmp / "ca")
    return ca, {node: ca.identity(f"h{node}") for node in range(101, 101 + count)}


def secure_sum(
    ca: RunLocalCA,
    ids: Mapping[int, Identity],
    inputs: Mapping[int, Vectors],
    *,
    threshold: int,
    drop_before_input: Sequence[int] = (),
    drop_after_input: Sequence[int] = (),
) -> Vectors:
    """Every step of one sum, with hospitals dropping before or after their input."""
    trust = ca.trust()
    session = Session(1, 1, "train", threshold, len(ids))
    server = SecureSum(session, list(ids))
    states: dict[int, PartyState] = {}
    bundles = {}
    for node, identity in ids.items():
        states[node], bundles[node] = party.advertise(session, node, identity)
    u1 = server.advertised(bundles)
    sealed = {node: party.share(states[node], u1, trust) for node in states}
    routed = server.shared(sealed)
    masked = {}
    for node in server.u2:
        if node in drop_before_input:
            continue
        party.receive(states[node], server.u2, routed[node])
        masked[node] = party.masked_input(states[node], dict(inputs[node]))
    shape = {k: (len(v), v.dtype) for k, v in next(iter(masked.values())).items()}
    u3 = server.collected(masked, shape)
    alive = [n for n in u3 if n not in drop_after_input]
    signatures = {n: party.consistency(states[n], u3, ids[n]) for n in alive}
    relayed = server.confirmed(signatures)
    revealed = {n: party.unmask(states[n], u3, relayed, trust) for n in alive}
    return server.unmasked(revealed)


def shared(
    ca: RunLocalCA, ids: Mapping[int, Identity], *, threshold: int
) -> tuple[dict[int, PartyState], dict[int, dict[int, bytes]]]:
    """Steps 1 and 2 for every hospital: their states and the shares they sealed."""
    session = Session(1, 1, "train", threshold, len(ids))
    states, bundles = {}, []
    for node, identity in ids.items():
        states[node], bundle = party.advertise(session, node, identity)
        bundles.append(bundle)
    sealed = {n: party.share(states[n], bundles, ca.trust()) for n in states}
    return states, sealed


def random_inputs(nodes: Sequence[int], size: int, seed: int = 0) -> dict[int, Vectors]:
    rng = np.random.default_rng(seed)
    return {
        n: {
            "update": rng.integers(0, 2**32, size, dtype=np.uint32),
            "counts": rng.integers(0, 1000, 7).astype(np.uint64),
        }
        for n in nodes
    }
