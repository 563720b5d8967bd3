"""What a site holds, in aggregate only, and how sites compare before training.

:func:`site_statistics` runs at a hospital: image counts per split and class,
header summaries (modality, size, bit depth, photometric interpretation),
quarantined files by reason, the intensity histogram of the preprocessed
images and the mean Nyúl-Udupa landmarks of the training images
(:mod:`fedward.data.harmonize`). Nothing per image leaves this function.
:func:`compare_sites` works on those aggregates alone and warns about label skew
and scanner shift.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fedward.data.datasets import SiteSplits
from fedward.data.dicom import (
    HEADER_FIELDS,
    header_summary,
    is_dicom,
    read_dataset,
)
from fedward.data.harmonize import PERCENTILES, site_landmarks, uint8_percentiles
from fedward.errors import DataError

logger = logging.getLogger(__name__)

BINS = 32
LABEL_SKEW = 0.25  # largest tolerated gap between a site's and the pooled class share
SCANNER_SHIFT = 0.10  # largest tolerated Jensen-Shannon divergence of histograms
SPLIT_NAMES = ("train", "val", "test")


def _file_summary(path: Path) -> dict[str, str]:
    if is_dicom(path):
        try:
            return header_summary(read_dataset(path))
        except DataError:
            return {}
    try:
        with Image.open(path) as img:
            return {
                "Modality": "picture",
                "Rows": str(img.height),
                "Columns": str(img.width),
                "PhotometricInterpretation": img.mode,
            }
    except OSError:
        return {}


def site_statistics(splits: SiteSplits, classes: list[str]) -> dict[str, Any]:
    """Aggregate figures of one site's data; no value refers to a single image."""
    counts = {
        split: dict(
            zip(classes, splits.get(split).class_counts(len(classes)), strict=True)
        )
        for split in SPLIT_NAMES
    }
    headers: dict[str, Counter[str]] = {k: Counter() for k in HEADER_FIELDS}
    for split in SPLIT_NAMES:
        for path in splits.get(split).paths:
            for key, value in _file_summary(Path(path)).items():
                if value and key in headers and key != "SeriesDescription":  # free text
                    headers[key][value] += 1
    pixels = (
        np.concatenate([splits.get(s).images.numpy().ravel() for s in SPLIT_NAMES])
        if splits.total()
        else np.zeros(0, dtype=np.uint8)
    )
    hist = np.bincount(pixels // (256 // BINS), minlength=BINS).astype(np.float64)
    percentiles = uint8_percentiles(pixels, (1, 50, 99)) if pixels.size else [0.0] * 3
    reasons = Counter(": ".join(r.split(": ")[:1]) for _, r in splits.skipped())
    landmarks, landmark_images = site_landmarks(splits.train.images)
    return {
        "images": splits.total(),
        "counts": counts,
        "quarantined": len(splits.skipped()),
        "quarantine-reasons": dict(reasons),
        "excluded-by-filters": splits.train.excluded,
        "headers": {k: dict(v) for k, v in headers.items() if v},
        "intensity": {
            "mean": float(pixels.mean()) if pixels.size else 0.0,
            "std": float(pixels.std()) if pixels.size else 0.0,
            **dict(zip(("p01", "p50", "p99"), map(float, percentiles), strict=True)),
            "histogram": (hist / max(hist.sum(), 1.0)).tolist(),
            # Nyúl-Udupa landmarks: the mean over training images, for harmonisation
            "landmarks": {
                "percentiles": list(PERCENTILES),
                "mean": landmarks,
                "images": landmark_images,
            },
        },
    }


def class_shares(stats: dict[str, Any]) -> np.ndarray:
    """A site's class distribution over all its splits."""
    totals = np.sum([list(c.values()) for c in stats["counts"].values()], axis=0)
    shares: np.ndarray = totals / max(float(totals.sum()), 1.0)
    return shares


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return (kl(p) + kl(q)) / 2


def compare_sites(
    stats: dict[str, dict[str, Any]],
    classes: list[str],
    *,
    label_skew: float = LABEL_SKEW,
    scanner_shift: float = SCANNER_SHIFT,
) -> dict[str, Any]:
    """Per-site label shares and histogram divergence, with warnings.

    Compares each site with the pooled figures (weighted by image count), from
    the aggregates of :func:`site_statistics` only.
    """
    names = sorted(stats)
    sizes = np.array([stats[n]["images"] for n in names], dtype=np.float64)
    shares = np.array([class_shares(stats[n]) for n in names])
    hists = np.array([stats[n]["intensity"]["histogram"] for n in names]) + 1e-12
    pooled_share = (shares * sizes[:, None]).sum(0) / max(sizes.sum(), 1.0)
    pooled_hist = (hists * sizes[:, None]).sum(0) / max(sizes.sum(), 1.0)
    sites: dict[str, Any] = {}
    warnings: list[str] = []
    for i, name in enumerate(names):
        gap = float(np.abs(shares[i] - pooled_share).max())
        shift = js_divergence(hists[i], pooled_hist)
        sites[name] = {
            "class-shares": dict(
                zip(classes, shares[i].round(4).tolist(), strict=True)
            ),
            "label-gap": round(gap, 4),
            "intensity-divergence": round(shift, 4),
        }
        if gap > label_skew:
            warnings.append(
                f"label skew: {name}'s class shares differ from the pooled shares by "
                f"{gap:.2f} (limit {label_skew:.2f})"
            )
        missing = [c for c, s in zip(classes, shares[i], strict=True) if s == 0]
        if missing:
            warnings.append(f"label skew: {name} has no images of {missing}")
        if shift > scanner_shift:
            warnings.append(
                f"scanner shift: {name}'s intensity histogram diverges from the "
                f"pooled one (Jensen-Shannon {shift:.3f}, limit {scanner_shift:.2f})"
            )
    pooled = dict(zip(classes, pooled_share.round(4).tolist(), strict=True))
    return {"pooled-class-shares": pooled, "sites": sites, "warnings": warnings}
