"""Masks from a cryptographic PRG, and the key agreement behind them (no Flower import).

As in Bonawitz et al. (CCS 2017), hospital ``u`` sends

    y_u = x_u + PRG(b_u) + sum over peers v of sign(u, v) * PRG(s_uv)   (mod 2**bits)

where ``b_u`` is its own random seed (the self mask), ``s_uv`` the X25519 secret it
shares with ``v`` (``+`` when ``u < v``, ``-`` otherwise, so the pair cancels in the
sum) and ``PRG`` is ChaCha20 (from ``cryptography``) keyed by HKDF-SHA256 of the
seed with a label naming the session, the pair and the vector: every stream has its
own key, so its all-zero nonce is never reused. Seeds are 32 random bytes from the
operating system; numpy's generator is never used for a mask.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedward.fl.secagg.quantise import Vectors

SEED_BYTES = 32
PROTOCOL = b"fedward-secagg/1"


def new_seed() -> bytes:
    """32 random bytes from the operating system's CSPRNG."""
    return os.urandom(SEED_BYTES)


def new_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair as raw bytes: (private, public)."""
    key = X25519PrivateKey.generate()
    return key.private_bytes_raw(), key.public_key().public_bytes_raw()


def public_of(private: bytes) -> bytes:
    """The raw X25519 public key of a raw private key."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def agree(private: bytes, peer_public: bytes) -> bytes:
    """The X25519 shared secret of our private key and a peer's public key."""
    peer = X25519PublicKey.from_public_bytes(peer_public)
    return X25519PrivateKey.from_private_bytes(private).exchange(peer)


def derive(secret: bytes, info: bytes) -> bytes:
    """A 32-byte key from ``secret`` for the purpose named by ``info`` (HKDF)."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=PROTOCOL + b"|" + info).derive(
        secret
    )


def prg(seed: bytes, info: bytes, length: int, dtype: type[np.generic]) -> np.ndarray:
    """``length`` pseudo-random values of ``dtype``: the ChaCha20 keystream."""
    nbytes = length * np.dtype(dtype).itemsize
    encryptor = Cipher(algorithms.ChaCha20(derive(seed, info), bytes(16)), None)
    stream = encryptor.encryptor().update(bytes(nbytes))
    return np.frombuffer(stream, dtype=dtype, count=length)


def _self_info(label: bytes, name: str) -> bytes:
    return label + b"|self|" + name.encode()


def _pair_info(label: bytes, u: int, v: int, name: str) -> bytes:
    low, high = sorted((u, v))
    return label + f"|pair|{low}|{high}|".encode() + name.encode()


def mask(
    values: Mapping[str, np.ndarray],
    me: int,
    self_seed: bytes,
    pair_secrets: Mapping[int, bytes],
    label: bytes,
) -> Vectors:
    """Each vector plus its self mask and the pairwise masks with every peer."""
    out: Vectors = {}
    for name, x in values.items():
        y = x.copy()
        y += prg(self_seed, _self_info(label, name), len(x), x.dtype.type)
        for peer, secret in pair_secrets.items():
            stream = prg(
                secret, _pair_info(label, me, peer, name), len(x), x.dtype.type
            )
            if me < peer:
                y += stream
            else:
                y -= stream
        out[name] = y
    return out


def remove_self_masks(total: Vectors, seeds: Iterable[bytes], label: bytes) -> Vectors:
    """Subtract the self masks of the hospitals whose inputs are in the sum."""
    out = {name: x.copy() for name, x in total.items()}
    for seed in seeds:
        for name, x in out.items():
            x -= prg(seed, _self_info(label, name), len(x), x.dtype.type)
    return out


def remove_dropped_masks(
    total: Vectors,
    dropped: Mapping[int, bytes],
    survivors: Mapping[int, bytes],
    label: bytes,
) -> Vectors:
    """Subtract the pairwise masks survivors added for hospitals that dropped.

    ``dropped`` maps each dropped hospital to its recovered X25519 private key,
    ``survivors`` each surviving hospital to its X25519 public key.
    """
    out = {name: x.copy() for name, x in total.items()}
    for v, private in dropped.items():
        for u, public in survivors.items():
            secret = agree(private, public)
            for name, x in out.items():
                stream = prg(
                    secret, _pair_info(label, u, v, name), len(x), x.dtype.type
                )
                if u < v:  # u added this stream
                    x -= stream
                else:
                    x += stream
    return out
