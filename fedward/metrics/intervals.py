"""Confidence intervals from aggregate counts only (no per-image data needed).

Wilson score intervals for proportions (accuracy, sensitivity, specificity,
precision), a multinomial bootstrap of the confusion matrix for macro F1, and
Hanley & McNeil's standard error for AUROC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedward.metrics.confusion import summarize
from fedward.metrics.counts import EvalCounts

Z95 = 1.959963984540054


def wilson(successes: float, total: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when ``total`` is 0."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def f1_bootstrap(
    confusion: np.ndarray,
    class_names: Sequence[str],
    draws: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """95 % interval of macro F1 by resampling the confusion matrix's cells."""
    n = int(confusion.sum())
    if n == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, confusion.ravel() / n, size=draws)
    k = confusion.shape[0]
    scores = [summarize(c.reshape(k, k), class_names)["f1"] for c in cells]
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def auroc_interval(
    auc: float, positives: float, negatives: float
) -> tuple[float, float]:
    """Hanley & McNeil (1982) normal interval of an AUROC."""
    if positives <= 0 or negatives <= 0:
        return 0.0, 1.0
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (
        auc * (1 - auc)
        + (positives - 1) * (q1 - auc * auc)
        + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    half = Z95 * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def intervals(
    counts: EvalCounts, class_names: Sequence[str]
) -> dict[str, tuple[float, float, float]]:
    """``metric -> (value, low, high)`` for the headline figures of one scope.

    Sensitivity, specificity and AUROC are those of the last class (the
    "positive" finding in a two-class set-up) and macro averages otherwise.
    """
    cm = counts.confusion
    figures = counts.figures(class_names)
    total = float(cm.sum())
    tp = np.diag(cm).astype(float)
    pos = cm.sum(1).astype(float)
    pred = cm.sum(0).astype(float)
    c = len(class_names) - 1
    name = class_names[c]
    tn = total - pos[c] - pred[c] + tp[c]
    out = {
        "accuracy": (figures["accuracy"], *wilson(tp.sum(), total)),
        f"sensitivity ({name})": (figures[f"recall/{name}"], *wilson(tp[c], pos[c])),
        f"specificity ({name})": (
            figures[f"specificity/{name}"],
            *wilson(tn, total - pos[c]),
        ),
        f"precision ({name})": (figures[f"precision/{name}"], *wilson(tp[c], pred[c])),
        "f1 (macro)": (figures["f1"], *f1_bootstrap(cm, class_names)),
        f"auroc ({name})": (
            figures[f"auroc/{name}"],
            *auroc_interval(figures[f"auroc/{name}"], pos[c], total - pos[c]),
        ),
    }
    return out
