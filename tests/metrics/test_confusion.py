import numpy as np
import pytest

from fedward.metrics.confusion import confusion_matrix, summarize

CLASSES = ["a", "b", "c"]


def test_confusion_matrix_counts_true_by_predicted() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)

    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_summary_matches_hand_computed_binary_figures() -> None:
    # 8 true negatives, 2 false positives, 1 false negative, 4 true positives
    cm = np.array([[8, 2], [1, 4]])

    m = summarize(cm, ["neg", "pos"])

    assert m["accuracy"] == pytest.approx(12 / 15)
    assert m["recall/pos"] == pytest.approx(4 / 5)  # sensitivity
    assert m["specificity/pos"] == pytest.approx(8 / 10)
    assert m["precision/pos"] == pytest.approx(4 / 6)
    assert m["f1/pos"] == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))
    assert m["recall"] == pytest.approx((8 / 10 + 4 / 5) / 2)  # macro


def test_zero_denominators_count_as_zero() -> None:
    m = summarize(np.array([[3, 0], [0, 0]]), ["neg", "pos"])

    assert m["recall/pos"] == 0.0
    assert m["precision/pos"] == 0.0
    assert m["accuracy"] == 1.0


def test_federated_figures_equal_pooled_predictions() -> None:
    rng = np.random.default_rng(0)
    sites = []
    for size in (37, 120, 9):  # unequal sites: averaging scores would be wrong
        y_true = rng.integers(0, 3, size)
        y_pred = np.where(rng.random(size) < 0.6, y_true, rng.integers(0, 3, size))
        sites.append((y_true, y_pred))
    pooled_true = np.concatenate([t for t, _ in sites])
    pooled_pred = np.concatenate([p for _, p in sites])

    federated = summarize(
        np.sum([confusion_matrix(t, p, 3) for t, p in sites], axis=0), CLASSES
    )
    pooled = summarize(confusion_matrix(pooled_true, pooled_pred, 3), CLASSES)
    averaged_f1 = np.mean(
        [summarize(confusion_matrix(t, p, 3), CLASSES)["f1"] for t, p in sites]
    )

    assert federated == pooled
    assert federated["f1"] != pytest.approx(averaged_f1)
