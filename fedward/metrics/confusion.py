"""Classification metrics from confusion matrices.

Global figures are always computed from the *sum* of the hospitals' confusion
matrices, so they equal the figures of the pooled predictions exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
) -> np.ndarray:
    """Counts ``cm[true, predicted]`` as int64 ``(K, K)``."""
    index = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(
        y_pred, dtype=np.int64
    )
    counts = np.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def summarize(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Accuracy and per-class and macro precision, recall, specificity and F1.

    Keys: ``accuracy``, ``precision``, ``recall``, ``specificity``, ``f1`` (macro
    averages) and ``<metric>/<class>`` per class. A ratio with a zero
    denominator counts as 0.
    """
    cm = np.asarray(cm, dtype=np.int64)
    total = cm.sum()
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = total - tp - fp - fn
    per_class = {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }
    out: dict[str, float] = {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "num-examples": float(total),
    }
    for name, values in per_class.items():
        out[name] = float(values.mean())
        for cls, value in zip(class_names, values, strict=True):
            out[f"{name}/{cls}"] = float(value)
    return out
