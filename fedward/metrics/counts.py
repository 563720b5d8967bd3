"""Summable evaluation counts: what a hospital reports, and what the server adds up.

A hospital sends, for the global model on its held-out images, only counts: the
summed loss, the confusion matrix, per-class histograms of predicted scores and
calibration-bin totals. Adding them up over hospitals gives exactly the counts of
the pooled predictions, so every global figure (accuracy, recall, F1, ECE) is the
pooled one; AUROC is computed from the summed score histograms.

AUROC error bound: with scores binned at width ``1 / SCORE_BINS``, a positive and a
negative whose scores fall in the same bin count as a tie (1/2). The binned AUROC
therefore differs from the exact one by at most half the share of such pairs,
``0.5 * sum_b pos_b * neg_b / (P * N)``, which is reported as ``auroc-bound``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedward.metrics.confusion import confusion_matrix, summarize

SCORE_BINS = 100  # score histogram resolution: bins of width 0.01
CALIBRATION_BINS = 15  # confidence bins for the expected calibration error

Figures = dict[str, float]


@dataclass(frozen=True)
class EvalCounts:
    """Counts over a set of images; ``+`` pools two sets exactly.

    ``score_hist[k, 0]`` histograms the score of class ``k`` over images of class
    ``k``, ``score_hist[k, 1]`` over the others; ``calibration`` rows are counts,
    summed confidence and summed correctness per confidence bin.
    """

    loss_sum: float
    num_examples: int
    confusion: np.ndarray
    score_hist: np.ndarray
    calibration: np.ndarray

    @classmethod
    def empty(cls, num_classes: int) -> EvalCounts:
        """Counts of no image."""
        return cls(
            0.0,
            0,
            np.zeros((num_classes, num_classes), dtype=np.int64),
            np.zeros((num_classes, 2, SCORE_BINS), dtype=np.int64),
            np.zeros((3, CALIBRATION_BINS), dtype=np.float64),
        )

    @classmethod
    def of_batch(
        cls, probs: np.ndarray, labels: np.ndarray, loss_sum: float
    ) -> EvalCounts:
        """Counts of one batch of class probabilities ``(N, K)`` and labels."""
        n, k = probs.shape
        preds = probs.argmax(1)
        bins = np.minimum((probs * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
        hist = np.zeros((k, 2, SCORE_BINS), dtype=np.int64)
        for c in range(k):
            is_c = labels == c
            hist[c, 0] = np.bincount(bins[is_c, c], minlength=SCORE_BINS)
            hist[c, 1] = np.bincount(bins[~is_c, c], minlength=SCORE_BINS)
        conf = probs.max(1)
        cbin = np.minimum(
            (conf * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1
        )
        calib = np.stack(
            [
                np.bincount(cbin, minlength=CALIBRATION_BINS).astype(np.float64),
                np.bincount(cbin, weights=conf, minlength=CALIBRATION_BINS),
                np.bincount(
                    cbin, weights=(preds == labels), minlength=CALIBRATION_BINS
                ),
            ]
        )
        return cls(loss_sum, n, confusion_matrix(labels, preds, k), hist, calib)

    def __add__(self, other: EvalCounts) -> EvalCounts:
        return EvalCounts(
            self.loss_sum + other.loss_sum,
            self.num_examples + other.num_examples,
            self.confusion + other.confusion,
            self.score_hist + other.score_hist,
            self.calibration + other.calibration,
        )

    @property
    def loss(self) -> float:
        """Mean loss per image (0 for an empty set)."""
        return self.loss_sum / self.num_examples if self.num_examples else 0.0

    @property
    def accuracy(self) -> float:
        """Share of correct predictions (0 for an empty set)."""
        return (
            float(np.trace(self.confusion) / self.num_examples)
            if self.num_examples
            else 0.0
        )

    def figures(self, class_names: Sequence[str]) -> Figures:
        """Loss, confusion-matrix metrics, AUROC (per class, macro) and ECE."""
        out: Figures = {"loss": self.loss, **summarize(self.confusion, class_names)}
        aurocs, bounds = [], []
        for c, name in enumerate(class_names):
            _, _, auc, bound = roc_curve(self.score_hist[c, 0], self.score_hist[c, 1])
            out[f"auroc/{name}"] = auc
            aurocs.append(auc)
            bounds.append(bound)
        out["auroc"] = float(np.mean(aurocs))
        out["auroc-bound"] = float(max(bounds))
        out["ece"] = expected_calibration_error(self.calibration)
        return out

    def to_json(self) -> dict[str, Any]:
        """The counts as JSON-ready lists (run folders store them so)."""
        return {
            "loss-sum": self.loss_sum,
            "num-examples": self.num_examples,
            "confusion-matrix": self.confusion.tolist(),
            "score-histogram": self.score_hist.tolist(),
            "calibration": self.calibration.tolist(),
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> EvalCounts:
        """The counts of :meth:`to_json` output."""
        return cls(
            float(row["loss-sum"]),
            int(row["num-examples"]),
            np.asarray(row["confusion-matrix"], dtype=np.int64),
            np.asarray(row["score-histogram"], dtype=np.int64),
            np.asarray(row["calibration"], dtype=np.float64),
        )


def pool(results: Iterable[EvalCounts]) -> EvalCounts:
    """The sum of several sets' counts (exactly the pooled set's counts)."""
    items = list(results)
    if not items:
        raise ValueError("no evaluation counts to pool")
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total


def roc_curve(
    pos: np.ndarray, neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """FPR, TPR, AUROC and its binning error bound from score histograms.

    Thresholds run from the highest bin down; AUROC is the trapezoid area, which
    counts same-bin positive/negative pairs as ties.
    """
    p, n = float(pos.sum()), float(neg.sum())
    if p == 0 or n == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), 0.5, 0.5
    tpr = np.concatenate([[0.0], np.cumsum(pos[::-1]) / p])
    fpr = np.concatenate([[0.0], np.cumsum(neg[::-1]) / n])
    auc = float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))
    bound = float(0.5 * np.sum(pos * neg) / (p * n))
    return fpr, tpr, auc, bound


def expected_calibration_error(calibration: np.ndarray) -> float:
    """ECE: bin-weighted gap between accuracy and confidence."""
    count, conf, correct = calibration
    total = count.sum()
    if total == 0:
        return 0.0
    mask = count > 0
    gaps = np.abs(correct[mask] - conf[mask])  # both are sums over the bin
    return float(gaps.sum() / total)
