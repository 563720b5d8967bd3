import numpy as np
import pytest

from fedward.metrics.counts import EvalCounts, expected_calibration_error, pool

CLASSES = ["neg", "pos"]


def exact_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney: share of positive/negative pairs ranked right, ties 1/2."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def batch(
    rng: np.random.Generator, n: int, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)
    p1 = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + shift * (2 * labels - 1))))
    return np.stack([1 - p1, p1], axis=1), labels


def test_pooled_site_counts_equal_the_counts_of_pooled_predictions() -> None:
    rng = np.random.default_rng(0)
    sites = [batch(rng, n, s) for n, s in ((50, 1.0), (200, 0.3), (13, 2.0))]

    federated = pool(EvalCounts.of_batch(p, y, 1.0) for p, y in sites)
    pooled = EvalCounts.of_batch(
        np.concatenate([p for p, _ in sites]),
        np.concatenate([y for _, y in sites]),
        3.0,
    )

    fed, ref = federated.figures(CLASSES), pooled.figures(CLASSES)
    assert fed.pop("ece") == pytest.approx(ref.pop("ece"), abs=1e-12)  # float sums
    assert fed == ref  # everything else from integer counts: exactly equal


def test_binned_auroc_is_within_its_reported_bound_of_the_exact_value() -> None:
    rng = np.random.default_rng(1)
    probs, labels = batch(rng, 3000, 0.8)

    figures = EvalCounts.of_batch(probs, labels, 0.0).figures(CLASSES)

    exact = exact_auroc(probs[:, 1], labels)
    assert 0.6 < exact < 0.95
    assert figures["auroc-bound"] < 0.01
    assert abs(figures["auroc/pos"] - exact) <= figures["auroc-bound"]
    assert figures["auroc/neg"] == pytest.approx(figures["auroc/pos"], abs=0.01)


def test_perfect_and_useless_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.05, 0.95]])
    constant = np.full((4, 2), 0.5)

    assert EvalCounts.of_batch(perfect, labels, 0).figures(CLASSES)["auroc"] == 1.0
    assert EvalCounts.of_batch(constant, labels, 0).figures(CLASSES)["auroc"] == 0.5


def test_ece_of_hand_made_bins() -> None:
    # 10 images at confidence 0.9 of which 6 right; 10 at 0.6 of which 6 right
    calibration = np.zeros((3, 15))
    calibration[:, 13] = [10, 9.0, 6]
    calibration[:, 9] = [10, 6.0, 6]

    assert expected_calibration_error(calibration) == pytest.approx((3.0 + 0.0) / 20)
