"""The server's part in one secure sum: relay, count, and unmask (no Flower import).

The server only relays sealed shares and signatures, checks that every step has at
least ``threshold`` hospitals, and in the end removes the masks with what the
survivors reveal: the self-mask seed of each hospital whose input is in the sum,
the mask key of each hospital that shared keys but sent no input. Each recovered
secret is checked against what its owner committed to when it advertised (the
seed's SHA-256, the public mask key), so a wrong share cannot go unnoticed.
Below the threshold at any step, :class:`SecureSum` raises
:class:`~fedward.errors.SecureAggregationError` and the sum is abandoned.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fedward.errors import SecureAggregationError
from fedward.fl.secagg.masking import public_of, remove_dropped_masks, remove_self_masks
from fedward.fl.secagg.party import Peer, Session
from fedward.fl.secagg.quantise import Vectors
from fedward.fl.secagg.shares import combine_secret

logger = logging.getLogger(__name__)

Shape = dict[str, tuple[int, np.dtype[np.generic]]]


class SecureSum:
    """One secure sum over the hospitals ``nodes``, driven step by step.

    Parameters
    ----------
    session
        The run, round, kind, threshold and party count.
    nodes
        The node ids asked to take part.
    """

    def __init__(self, session: Session, nodes: Sequence[int]) -> None:
        self.session = session
        self.nodes = sorted(nodes)
        self.peers: dict[int, Peer] = {}
        self.u2: list[int] = []
        self.inputs: dict[int, Vectors] = {}
        self.u3: list[int] = []
        self.signatures: dict[int, bytes] = {}
        self.revealers: list[int] = []

    @property
    def threshold(self) -> int:
        """How many hospitals every step needs."""
        return self.session.threshold

    def names(self) -> dict[int, str]:
        """Each asked node's name (from its certificate once it advertised)."""
        return {
            n: self.peers[n].name if n in self.peers else f"node-{n}"
            for n in self.nodes
        }

    def _enough(self, count: int, step: str) -> None:
        if count < self.threshold:
            raise SecureAggregationError(
                f"{step}: {count} hospital(s), below the threshold {self.threshold}"
            )

    def advertised(self, bundles: Mapping[int, bytes]) -> list[bytes]:
        """Step 1 replies; returns the bundles every hospital must check (U1).

        A bundle whose node differs from its sender is dropped (it will fail
        the hospitals' checks anyway).
        """
        kept = []
        for node, bundle in sorted(bundles.items()):
            try:
                peer, _, _ = Peer.parse(bundle)
            except SecureAggregationError as exc:
                logger.warning("secure %s: node %d: %s", self.session.kind, node, exc)
                continue
            if peer.node == node and node in self.nodes:
                self.peers[node] = peer
                kept.append(bundle)
        self._enough(len(kept), "keys advertised")
        return kept

    def shared(
        self, sealed: Mapping[int, Mapping[int, bytes]]
    ) -> dict[int, dict[int, bytes]]:
        """Step 2 replies (sender -> recipient -> sealed share); routes them (U2)."""
        u1 = set(self.peers)
        senders = [s for s in sorted(sealed) if s in u1 and set(sealed[s]) >= u1 - {s}]
        self._enough(len(senders), "keys shared")
        self.u2 = senders
        return {r: {s: bytes(sealed[s][r]) for s in senders if s != r} for r in senders}

    def collected(self, inputs: Mapping[int, Vectors], shape: Shape) -> list[int]:
        """Step 3 replies: the well-formed masked inputs of hospitals in U2 (U3)."""
        for node, vectors in sorted(inputs.items()):
            got = {k: (len(v), v.dtype) for k, v in vectors.items()}
            if node not in self.u2 or got != shape:
                logger.warning(
                    "secure %s: ignored a malformed masked input from %s",
                    self.session.kind,
                    self.names().get(node, f"node-{node}"),
                )
                continue
            self.inputs[node] = dict(vectors)
        self.u3 = sorted(self.inputs)
        self._enough(len(self.u3), "masked inputs")
        return self.u3

    def confirmed(self, signatures: Mapping[int, bytes]) -> dict[int, bytes]:
        """Step 4 replies: the survivors' signatures of U3, relayed to all (U4)."""
        self.signatures = {n: s for n, s in signatures.items() if n in self.u3}
        self._enough(len(self.signatures), "survivors confirmed")
        return self.signatures

    def unmasked(
        self, revealed: Mapping[int, tuple[Mapping[int, bytes], Mapping[int, bytes]]]
    ) -> Vectors:
        """Step 5 replies (seed shares, mask-key shares): the plain sum of U3's inputs.

        Raises
        ------
        SecureAggregationError
            If fewer than ``threshold`` hospitals revealed shares, or a recovered
            secret does not match its owner's commitment.
        """
        answers = {n: r for n, r in revealed.items() if n in self.u3}
        self._enough(len(answers), "shares revealed")
        self.revealers = sorted(answers)
        order = sorted(self.peers)
        dropped = [n for n in self.u2 if n not in self.inputs]

        def recover(owner: int, part: int) -> bytes:
            shares = {
                order.index(n) + 1: bytes(r[part][owner])
                for n, r in answers.items()
                if owner in r[part]
            }
            return combine_secret(shares, self.threshold)

        seeds = []
        for node in self.u3:
            seed = recover(node, 0)
            if hashlib.sha256(seed).digest() != self.peers[node].b_commit:
                raise SecureAggregationError(f"recovered a wrong seed for node {node}")
            seeds.append(seed)
        keys = {}
        for node in dropped:
            key = recover(node, 1)
            if public_of(key) != self.peers[node].s_pk:
                raise SecureAggregationError(f"recovered a wrong key for node {node}")
            keys[node] = key
        total = _sum(self.inputs[n] for n in self.u3)
        label = self.session.label
        total = remove_self_masks(total, seeds, label)
        survivors = {n: self.peers[n].s_pk for n in self.u3}
        return remove_dropped_masks(total, keys, survivors, label)


def _sum(inputs: Iterable[Vectors]) -> Vectors:
    total: Vectors = {}
    for vectors in inputs:
        for name, x in vectors.items():
            if name in total:
                total[name] += x
            else:
                total[name] = x.copy()
    return total
