"""Shamir shares of a hospital's mask secrets, sealed for each peer (no Flower import).

Secret sharing is pycryptodome's reviewed ``Crypto.Protocol.SecretSharing.Shamir``
(over GF(2^128), 16-byte secrets): a 32-byte secret is split as two 16-byte blocks
with the same threshold, and share ``i`` of the secret is share ``i`` of each block.
Party ``i`` (1-based, its place in the session's sorted node list) holds share ``i``.

A share travels through the server sealed for its recipient: ChaCha20-Poly1305
under a key derived (HKDF) from the X25519 secret of the sender's and the
recipient's encryption keys, with the session, sender and recipient as associated
data, so the server can neither read nor redirect it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from fedward.errors import SecureAggregationError
from fedward.fl.secagg.masking import agree, derive

BLOCK = 16
NONCE = 12


def split_secret(secret: bytes, threshold: int, parties: int) -> list[bytes]:
    """Shares ``1..parties`` of ``secret``; any ``threshold`` of them recover it."""
    if len(secret) % BLOCK or not secret:
        raise ValueError(f"secrets are split in {BLOCK}-byte blocks")
    if not 2 <= threshold <= parties:
        raise ValueError(f"threshold {threshold} must be in [2, {parties}]")
    blocks = [
        Shamir.split(threshold, parties, secret[i : i + BLOCK], False)
        for i in range(0, len(secret), BLOCK)
    ]
    return [b"".join(block[j][1] for block in blocks) for j in range(parties)]


def combine_secret(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The secret from at least ``threshold`` shares (by 1-based index).

    Raises
    ------
    SecureAggregationError
        If there are fewer than ``threshold`` shares or they differ in length.
    """
    chosen = sorted(shares.items())[:threshold]
    lengths = {len(share) for _, share in chosen}
    if len(chosen) < threshold or len(lengths) != 1:
        raise SecureAggregationError(
            f"{len(chosen)} usable shares, the threshold is {threshold}"
        )
    length = lengths.pop()
    return b"".join(
        Shamir.combine(
            [(index, share[i : i + BLOCK]) for index, share in chosen], False
        )
        for i in range(0, length, BLOCK)
    )


def _aad(label: bytes, sender: int, recipient: int) -> bytes:
    return label + f"|share|{sender}->{recipient}".encode()


def seal(
    private: bytes,
    peer_public: bytes,
    label: bytes,
    sender: int,
    recipient: int,
    plaintext: bytes,
) -> bytes:
    """``plaintext`` encrypted and authenticated for ``recipient``."""
    key = derive(agree(private, peer_public), label + b"|share-key")
    nonce = os.urandom(NONCE)
    aad = _aad(label, sender, recipient)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def unseal(
    private: bytes,
    peer_public: bytes,
    label: bytes,
    sender: int,
    recipient: int,
    sealed: bytes,
) -> bytes:
    """The plaintext of :func:`seal`.

    Raises
    ------
    SecureAggregationError
        If the ciphertext was not sealed by ``sender`` for ``recipient`` in this
        session, or was changed.
    """
    key = derive(agree(private, peer_public), label + b"|share-key")
    try:
        return ChaCha20Poly1305(key).decrypt(
            sealed[:NONCE], sealed[NONCE:], _aad(label, sender, recipient)
        )
    except InvalidTag:
        raise SecureAggregationError(
            f"the share from node {sender} does not authenticate"
        ) from None
