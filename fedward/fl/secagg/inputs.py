"""What a hospital puts into a secure sum, and what the server makes of the sum.

No Flower import. The hospital checks its own update (finite; shapes are its
model's), clips it to the run's L2 norm bound, then encodes it
(:mod:`.quantise`); the server turns the unmasked sum back into FedAvg weights or
pooled evaluation counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedward.config import FedwardConfig
from fedward.errors import WeightsError
from fedward.fl.secagg.quantise import (
    COUNTS,
    TRAIN_HEAD,
    UPDATE,
    Layout,
    UpdateCodec,
    Vectors,
    clip_norm,
    decode_train_counts,
    encode_eval_counts,
    encode_train_counts,
)
from fedward.learning.loops import TrainResult
from fedward.metrics.counts import EvalCounts


def codec(config: FedwardConfig, parties: int) -> UpdateCodec:
    """The run's fixed-point code for a sum of ``parties`` updates."""
    return UpdateCodec(config.secure_clip_range, config.secure_max_examples, parties)


def train_input(
    config: FedwardConfig,
    parties: int,
    received: Mapping[str, np.ndarray],
    trained: Mapping[str, np.ndarray],
    result: TrainResult,
) -> tuple[Vectors, dict[str, Any]]:
    """The vectors a hospital masks after training, and its own figures.

    Raises
    ------
    WeightsError
        If the trained weights do not have the received ones' keys and shapes,
        or the update is not finite (the hospital then drops out of the round).
    """
    if {k: v.shape for k, v in received.items()} != {
        k: v.shape for k, v in trained.items()
    }:
        raise WeightsError("the trained weights do not match the received ones")
    layout = Layout.of(received)
    sent_floats, _ = layout.split(received)
    floats, ints = layout.split(trained)
    try:
        delta, norm = clip_norm(floats - sent_floats, config.secure_norm_bound)
    except ValueError as exc:
        raise WeightsError(str(exc)) from None
    code = codec(config, parties)
    weight = code.weight(result.num_examples)
    update, clipped = code.encode(delta, weight)
    last = result.epochs[-1]
    counts = encode_train_counts(weight, last.train_loss, last.train_accuracy, ints)
    figures = {
        "num-examples": result.num_examples,
        "weight": weight,
        "train-loss": last.train_loss,
        "train-accuracy": last.train_accuracy,
        "val-loss": last.val_loss,
        "val-accuracy": last.val_accuracy,
        "update-norm": norm,
        "norm-clipped": norm > config.secure_norm_bound,
        "values-clipped": clipped,
    }
    return {UPDATE: update, COUNTS: counts}, figures


def evaluate_input(counts: EvalCounts) -> Vectors:
    """The vector a hospital masks after evaluating."""
    return {COUNTS: encode_eval_counts(counts)}


@dataclass(frozen=True)
class TrainSum:
    """The server's reading of a secure training sum."""

    arrays: dict[str, np.ndarray]  # the new global weights
    num_examples: int  # summed example weight
    train_loss: float
    train_accuracy: float
    error_bound: float  # largest quantisation error of one weight


def train_sum(
    config: FedwardConfig,
    parties: int,
    global_arrays: Mapping[str, np.ndarray],
    total: Vectors,
) -> TrainSum:
    """New global weights: the old ones plus the weighted mean update.

    Integer buffers become the weighted mean of the hospitals' values, as
    Flower's FedAvg makes them.
    """
    layout = Layout.of(global_arrays)
    floats, _ = layout.split(global_arrays)
    weight, loss, accuracy, ints = decode_train_counts(total[COUNTS])
    code = codec(config, parties)
    mean = floats + code.decode_mean(total[UPDATE], weight)
    return TrainSum(
        layout.join(mean, ints), weight, loss, accuracy, code.error_bound(weight)
    )


def shapes(
    global_arrays: Mapping[str, np.ndarray] | None, eval_size: int
) -> dict[str, tuple[int, np.dtype[np.generic]]]:
    """The vectors' lengths and types a masked train (or evaluate) input must have."""
    if global_arrays is None:
        return {COUNTS: (eval_size, np.dtype(np.uint64))}
    layout = Layout.of(global_arrays)
    ints = sum(int(np.prod(shape)) for _, shape, _ in layout.ints)
    return {
        UPDATE: (layout.float_size, np.dtype(np.uint32)),
        COUNTS: (TRAIN_HEAD + ints, np.dtype(np.uint64)),
    }
