"""The study report's figures, each a PNG written with matplotlib (Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedward.metrics.counts import EvalCounts, roc_curve
from fedward.metrics.intervals import wilson

METRICS = ("accuracy", "recall", "f1", "auroc")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def site_bars(
    sites: Mapping[str, EvalCounts], class_names: Sequence[str], path: Path
) -> None:
    """Accuracy, recall, F1 and AUROC per hospital and pooled, accuracy with CIs."""
    plt = _pyplot()
    names = list(sites)
    figures = [sites[n].figures(class_names) for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names) + 2), 3.8))
    width = 0.8 / len(METRICS)
    x = np.arange(len(names))
    for i, metric in enumerate(METRICS):
        values = [f[metric] for f in figures]
        errors = None
        if metric == "accuracy":
            bounds = [
                wilson(float(np.trace(sites[n].confusion)), sites[n].num_examples)
                for n in names
            ]
            errors = np.array(
                [
                    [v - lo for v, (lo, _) in zip(values, bounds, strict=True)],
                    [hi - v for v, (_, hi) in zip(values, bounds, strict=True)],
                ]
            )
        ax.bar(
            x + (i - 1.5) * width, values, width, yerr=errors, capsize=3, label=metric
        )
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylim(0, 1.05)
    ax.set_title("Final global model on each hospital's held-out images")
    ax.legend(fontsize=8, ncol=4, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_plot(counts: EvalCounts, class_names: Sequence[str], path: Path) -> None:
    """The pooled confusion matrix with counts in the cells."""
    plt = _pyplot()
    cm = counts.confusion
    fig, ax = plt.subplots(
        figsize=(3.2 + 0.5 * len(class_names), 3.0 + 0.5 * len(class_names))
    )
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        colour = "white" if v > cm.max() / 2 else "black"
        ax.text(j, i, str(v), ha="center", va="center", color=colour)
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (all hospitals)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def roc_plot(
    scopes: Mapping[str, EvalCounts], class_names: Sequence[str], path: Path
) -> None:
    """ROC of the positive (last) class: pooled bold, each hospital thin."""
    plt = _pyplot()
    c = len(class_names) - 1
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, counts in scopes.items():
        fpr, tpr, auc, _ = roc_curve(counts.score_hist[c, 0], counts.score_hist[c, 1])
        pooled = name == "all hospitals"
        ax.plot(
            fpr, tpr, linewidth=2.5 if pooled else 1, label=f"{name} (AUROC {auc:.3f})"
        )
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel(f"sensitivity ({class_names[c]})")
    ax.set_title("ROC curves")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def calibration_plot(counts: EvalCounts, path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin."""
    plt = _pyplot()
    count, conf, correct = counts.calibration
    mask = count > 0
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot(conf[mask] / count[mask], correct[mask] / count[mask], "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Calibration (all hospitals)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def baseline_bars(comparison: Mapping[str, Any], path: Path) -> None:
    """F1 and AUROC per hospital: local-only, federated, pooled."""
    plt = _pyplot()
    names = list(comparison)
    kinds = ("local-only", "federated", "pooled")
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(names) + 3), 3.8))
    for ax, metric in zip(axes, ("f1", "auroc"), strict=True):
        x = np.arange(len(names))
        for i, kind in enumerate(kinds):
            values = [comparison[n][metric][kind] for n in names]
            ax.bar(x + (i - 1) * 0.27, values, 0.27, label=kind)
        ax.set_xticks(x, names, rotation=15)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{metric}: local-only vs federated vs pooled")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


PLOTTED = ("accuracy", "recall", "f1")


def plot_rounds(rows: list[dict[str, Any]], path: Path) -> None:
    """PNG of accuracy, recall and F1 per round: global bold, hospitals thin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.6))
    sites = sorted({r["site"] for r in rows if r["scope"] == "site"})
    for ax, metric in zip(axes, PLOTTED, strict=True):
        for scope, site, style in [("global", None, "-o")] + [
            ("site", s, "--") for s in sites
        ]:
            pts = [
                (r["round"], r[metric])
                for r in rows
                if r["scope"] == scope
                and r["site"] == site
                and r.get(metric) is not None
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                label = "global (pooled counts)" if site is None else site
                ax.plot(
                    xs, ys, style, label=label, linewidth=2.5 if site is None else 1
                )
        ax.set_title(metric)
        ax.set_xlabel("round")
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
