import numpy as np
import pytest

from fedward.fl.secagg.quantise import (
    UpdateCodec,
    clip_norm,
    decode_eval_counts,
    decode_train_counts,
    encode_eval_counts,
    encode_train_counts,
)
from fedward.metrics.counts import EvalCounts, pool


def test_the_scale_keeps_the_largest_possible_sum_in_32_signed_bits() -> None:
    codec = UpdateCodec(clip_range=0.5, max_weight=65536, parties=3)
    extreme = np.full(4, 10.0)  # clipped to +0.5 at the largest weight

    total = sum(
        (codec.encode(extreme, 65536)[0] for _ in range(3)), np.zeros(4, np.uint32)
    )

    assert codec.scale == 2**14
    assert codec.decode_mean(total, 3 * 65536) == pytest.approx(0.5)
    negative = sum(
        (codec.encode(-extreme, 65536)[0] for _ in range(3)), np.zeros(4, np.uint32)
    )
    assert codec.decode_mean(negative, 3 * 65536) == pytest.approx(-0.5)


def test_the_weighted_mean_update_is_within_the_stated_error_bound() -> None:
    rng = np.random.default_rng(0)
    codec = UpdateCodec(clip_range=0.5, max_weight=65536, parties=10)
    deltas = [rng.normal(0, 0.01, 100_000) for _ in range(10)]
    weights = [int(w) for w in rng.integers(20, 300, 10)]
    total = np.zeros(100_000, np.uint32)
    for delta, w in zip(deltas, weights, strict=True):
        encoded, clipped = codec.encode(delta, w)
        total += encoded
        assert clipped == 0

    mean = codec.decode_mean(total, sum(weights))

    exact = sum(d * w for d, w in zip(deltas, weights, strict=True)) / sum(weights)
    error = np.abs(mean - exact).max()
    assert error <= codec.error_bound(sum(weights))
    assert codec.error_bound(sum(weights)) < 1e-5


def test_values_beyond_the_range_are_clipped_and_counted() -> None:
    codec = UpdateCodec(clip_range=0.1, max_weight=100, parties=2)

    encoded, clipped = codec.encode(np.array([0.05, 0.2, -0.3]), 10)

    assert clipped == 2
    assert codec.decode_mean(encoded, 10) == pytest.approx([0.05, 0.1, -0.1], abs=1e-6)


def test_the_example_weight_is_capped() -> None:
    assert UpdateCodec(0.5, 1000, 3).weight(5000) == 1000


def test_an_update_above_the_norm_bound_is_scaled_down_to_it() -> None:
    clipped, norm = clip_norm(np.array([3.0, 4.0]), 1.0)

    assert norm == 5.0
    assert np.linalg.norm(clipped) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN"):
        clip_norm(np.array([1.0, np.nan]), 1.0)


def test_evaluation_counts_sum_exactly_in_the_64_bit_ring() -> None:
    rng = np.random.default_rng(1)
    sites = []
    for _ in range(3):
        probs = rng.dirichlet([1, 1], 50)
        labels = rng.integers(0, 2, 50)
        sites.append(EvalCounts.of_batch(probs, labels, float(rng.uniform(10, 40))))

    total = sum((encode_eval_counts(c) for c in sites), np.zeros(1, np.uint64))
    summed = decode_eval_counts(total, 2)

    exact = pool(sites)
    assert summed.num_examples == exact.num_examples
    np.testing.assert_array_equal(summed.confusion, exact.confusion)
    np.testing.assert_array_equal(summed.score_hist, exact.score_hist)
    np.testing.assert_allclose(summed.calibration, exact.calibration, atol=3 * 2**-25)
    assert summed.loss_sum == pytest.approx(exact.loss_sum, abs=3 * 2**-25)
    figures, exact_figures = summed.figures(["a", "b"]), exact.figures(["a", "b"])
    assert figures["ece"] == pytest.approx(exact_figures["ece"], abs=1e-7)
    assert figures["f1"] == exact_figures["f1"]
    assert figures["auroc"] == exact_figures["auroc"]


def test_train_counts_carry_the_weight_and_weighted_integer_buffers() -> None:
    a = encode_train_counts(10, 0.5, 0.8, np.array([7]))
    b = encode_train_counts(30, 0.3, 0.6, np.array([3]))

    weight, loss, accuracy, ints = decode_train_counts(a + b)

    assert weight == 40
    assert loss == pytest.approx((10 * 0.5 + 30 * 0.3) / 40)
    assert accuracy == pytest.approx((10 * 0.8 + 30 * 0.6) / 40)
    assert ints == pytest.approx([(70 + 90) / 40])
