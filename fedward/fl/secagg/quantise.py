"""Fixed-point encoding of what a hospital adds to a secure sum (no Flower import).

Masks are added modulo ``2**bits``, so a hospital's contribution must be integers.
It sends two vectors, each masked as a whole:

``update`` (modulo 2**32, the size of fp32 weights)
    Its model update ``delta = trained - received`` (floating tensors only), each
    value clipped to ``[-c, c]`` (``secure-clip-range``) and multiplied by its
    example weight ``w = min(n, W)`` (``secure-max-examples``), as
    ``round(delta * w * S)``. The scale ``S = 2**f`` is the largest power of two
    with ``c * W * H * S <= 2**31 - 1`` for the ``H`` hospitals of the sum: the
    sum of ``H`` such values stays in the signed 32-bit range and so decodes
    exactly. The mean update ``sum / (S * sum(w))`` is then off by at most
    ``H / (2 * S * sum(w))`` per value (one rounding of at most 1/2 per hospital):
    :meth:`UpdateCodec.error_bound`.
``counts`` (modulo 2**64)
    Integers that come out exact: the weight ``w``; integer buffers times ``w``
    (BatchNorm's ``num_batches_tracked``); the evaluation counts (confusion
    matrix, score histograms, calibration-bin counts). Float sums among them
    (loss sums, summed confidences) are fixed point with scale ``2**24``: each
    hospital's rounding is at most ``2**-25``, so an ECE or mean loss over ``N``
    images is off by less than ``H * 15 * 2**-25 / N``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fedward.metrics.counts import CALIBRATION_BINS, SCORE_BINS, EvalCounts

UPDATE_BITS = 32
COUNT_BITS = 64
FLOAT_SCALE = 2**24
UPDATE = "update"
COUNTS = "counts"
Vectors = dict[str, np.ndarray]


def ring_dtype(bits: int) -> type[np.unsignedinteger]:
    """The unsigned numpy type that wraps modulo ``2**bits``."""
    return np.uint32 if bits == UPDATE_BITS else np.uint64


def to_ring(values: np.ndarray, bits: int) -> np.ndarray:
    """Signed integers as their residues modulo ``2**bits`` (two's complement)."""
    return values.astype(np.int64, copy=False).astype(ring_dtype(bits))


def from_ring(values: np.ndarray) -> np.ndarray:
    """Residues read back as signed integers (int64)."""
    signed = np.int32 if values.dtype == np.uint32 else np.int64
    return values.view(signed).astype(np.int64)


def fixed(values: np.ndarray | float) -> np.ndarray:
    """Non-integer sums as fixed point with scale ``2**24`` (int64)."""
    return np.rint(np.asarray(values, dtype=np.float64) * FLOAT_SCALE).astype(np.int64)


def unfixed(values: np.ndarray) -> np.ndarray:
    """The floats of :func:`fixed`."""
    return values.astype(np.float64) / FLOAT_SCALE


@dataclass(frozen=True)
class Layout:
    """Which tensors of a state dict are floating (averaged as updates) or integer."""

    floats: tuple[tuple[str, tuple[int, ...], str], ...]
    ints: tuple[tuple[str, tuple[int, ...], str], ...]

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> Layout:
        """The layout of ``arrays``, in their order."""
        floats: list[tuple[str, tuple[int, ...], str]] = []
        ints: list[tuple[str, tuple[int, ...], str]] = []
        for key, value in arrays.items():
            entry = (key, tuple(value.shape), value.dtype.str)
            (floats if np.issubdtype(value.dtype, np.floating) else ints).append(entry)
        return cls(tuple(floats), tuple(ints))

    @property
    def float_size(self) -> int:
        """Number of floating values."""
        return sum(math.prod(shape) for _, shape, _ in self.floats)

    def split(self, arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """All floating values (float32) and all integer values (int64), flat."""
        floats = [np.asarray(arrays[k], np.float32).ravel() for k, _, _ in self.floats]
        ints = [np.asarray(arrays[k]).astype(np.int64).ravel() for k, _, _ in self.ints]
        return _concat(floats, np.float32), _concat(ints, np.int64)

    def join(self, floats: np.ndarray, ints: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays of this layout from flat values, cast back to their dtypes."""
        out: dict[str, np.ndarray] = {}
        for entries, flat in ((self.floats, floats), (self.ints, ints)):
            start = 0
            for key, shape, dtype in entries:
                size = math.prod(shape)
                chunk = flat[start : start + size].reshape(shape)
                out[key] = np.asarray(chunk).astype(np.dtype(dtype))
                start += size
        return out


def _concat(parts: list[np.ndarray], dtype: type[np.generic]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


@dataclass(frozen=True)
class UpdateCodec:
    """The fixed-point code of a secure sum of ``parties`` model updates.

    Parameters
    ----------
    clip_range
        ``c``: each update value is clipped to ``[-c, c]``.
    max_weight
        ``W``: a hospital's example weight is ``min(n, W)``.
    parties
        ``H``: how many hospitals the sum may hold.
    """

    clip_range: float
    max_weight: int
    parties: int

    @property
    def scale(self) -> int:
        """``S``: the largest power of two keeping the sum in 32 signed bits."""
        room = (2**31 - 1) / (self.clip_range * self.max_weight * self.parties)
        if room < 1:
            raise ValueError("secure-clip-range x secure-max-examples is too large")
        return int(2 ** math.floor(math.log2(room)))

    def weight(self, num_examples: int) -> int:
        """A hospital's example weight ``min(n, W)``."""
        return min(int(num_examples), self.max_weight)

    def encode(self, delta: np.ndarray, weight: int) -> tuple[np.ndarray, int]:
        """``round(clip(delta) * w * S)`` modulo 2**32; how many values were clipped.

        Computed in float64 (the products reach 2**31, beyond float32's 24-bit
        mantissa) with torch, which is several times faster than numpy here.
        """
        c = self.clip_range
        values = torch.from_numpy(np.ascontiguousarray(delta))
        clipped = int((values.abs() > c).sum())
        scaled = values.to(torch.float64, copy=True).clamp_(-c, c)
        scaled.mul_(float(weight) * self.scale)
        return to_ring(scaled.round_().to(torch.int64).numpy(), UPDATE_BITS), clipped

    def decode_mean(self, total: np.ndarray, total_weight: int) -> np.ndarray:
        """The weighted mean update from the unmasked sum of encodings."""
        return from_ring(total).astype(np.float64) / (self.scale * total_weight)

    def error_bound(self, total_weight: int) -> float:
        """Largest quantisation error of one value of the mean update."""
        return self.parties / (2.0 * self.scale * total_weight)


def clip_norm(delta: np.ndarray, bound: float) -> tuple[np.ndarray, float]:
    """``delta`` scaled down to L2 norm ``bound`` if above it; and its norm before.

    Raises
    ------
    ValueError
        If ``delta`` holds NaN or infinite values.
    """
    norm = float(torch.linalg.vector_norm(torch.from_numpy(delta), dtype=torch.float64))
    if not math.isfinite(norm):
        raise ValueError("the update holds NaN or infinite values")
    if norm > bound:
        return (delta * (bound / norm)).astype(delta.dtype), norm
    return delta, norm


# --- the counts vector of a train reply -----------------------------------------------

TRAIN_HEAD = 3  # weight, train-loss x weight, train-accuracy x weight


def encode_train_counts(
    weight: int, train_loss: float, train_accuracy: float, int_values: np.ndarray
) -> np.ndarray:
    """``[w, fixed(loss*w), fixed(accuracy*w), int buffers*w]`` modulo 2**64."""
    head = np.array(
        [weight, *fixed(np.array([train_loss, train_accuracy]) * weight)],
        dtype=np.int64,
    )
    return to_ring(np.concatenate([head, int_values * weight]), COUNT_BITS)


def decode_train_counts(total: np.ndarray) -> tuple[int, float, float, np.ndarray]:
    """Summed weight, mean train loss and accuracy, and the weighted integer means."""
    values = from_ring(total)
    weight = int(values[0])
    if weight <= 0:
        raise ValueError(f"the summed example weight is {weight}")
    loss, accuracy = unfixed(values[1:TRAIN_HEAD]) / weight
    return weight, float(loss), float(accuracy), values[TRAIN_HEAD:] / weight


# --- the counts vector of an evaluate reply -------------------------------------------


def eval_counts_size(num_classes: int) -> int:
    """Length of the encoded counts of ``num_classes`` classes."""
    return 2 + num_classes**2 + num_classes * 2 * SCORE_BINS + 3 * CALIBRATION_BINS


def encode_eval_counts(counts: EvalCounts) -> np.ndarray:
    """Evaluation counts as integers modulo 2**64 (float sums in fixed point)."""
    calib = counts.calibration
    parts = [
        np.array([counts.num_examples], dtype=np.int64),
        fixed(counts.loss_sum).reshape(1),
        counts.confusion.astype(np.int64).ravel(),
        counts.score_hist.astype(np.int64).ravel(),
        np.rint(calib[0]).astype(np.int64),
        fixed(calib[1]),
        np.rint(calib[2]).astype(np.int64),
    ]
    return to_ring(np.concatenate(parts), COUNT_BITS)


def decode_eval_counts(total: np.ndarray, num_classes: int) -> EvalCounts:
    """The summed :class:`EvalCounts` from the unmasked sum of encodings."""
    k, values = num_classes, from_ring(total)
    if values.shape != (eval_counts_size(k),):
        raise ValueError(f"expected {eval_counts_size(k)} counts, got {values.shape}")
    cm_end = 2 + k * k
    hist_end = cm_end + k * 2 * SCORE_BINS
    calib = values[hist_end:].reshape(3, CALIBRATION_BINS)
    return EvalCounts(
        float(unfixed(values[1:2])[0]),
        int(values[0]),
        values[2:cm_end].reshape(k, k),
        values[cm_end:hist_end].reshape(k, 2, SCORE_BINS),
        np.stack([calib[0], unfixed(calib[1]), calib[2]]).astype(np.float64),
    )
