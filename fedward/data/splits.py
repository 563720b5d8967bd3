"""Seeded splits of a site's images and partitions of pooled images.

Pure functions of label arrays: the same labels and seed always give the same
indices, on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedward.config import FedwardConfig
from fedward.data.datasets import DecodedImages, SiteSplits
from fedward.errors import DataError

SPLITS = ("train", "val", "test")


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split indices per class into train/val/test, reproducibly for a seed.

    Each class contributes ``round(n * fraction)`` images to val and test, and at
    least one image stays in train.
    """
    rng = np.random.default_rng(seed)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n_val = min(round(len(idx) * val_fraction), max(len(idx) - 1, 0))
        n_test = min(round(len(idx) * test_fraction), max(len(idx) - 1 - n_val, 0))
        parts[1].extend(idx[:n_val])
        parts[2].extend(idx[n_val : n_val + n_test])
        parts[0].extend(idx[n_val + n_test :])
    train, val, test = (np.sort(np.asarray(p, dtype=np.int64)) for p in parts)
    return train, val, test


def require_classes(data: DecodedImages, classes: Sequence[str], where: Path) -> None:
    """Check that at least two classes have images and no class folder is empty.

    Raises
    ------
    DataError
        Naming the counts per class.
    """
    counts = data.class_counts(len(classes))
    present = [c for c, n in zip(classes, counts, strict=True) if n > 0]
    if len(present) < 2:
        raise DataError(
            f"{where}: needs usable images of at least two classes, found "
            f"{dict(zip(classes, counts, strict=True))}"
        )
    empty = [
        c
        for c, n in zip(classes, counts, strict=True)
        if n == 0 and (where / c).is_dir()
    ]
    if empty:
        raise DataError(f"{where}: class folder(s) {empty} hold no usable image")


def split_site(
    data: DecodedImages,
    classes: Sequence[str],
    where: Path,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> SiteSplits:
    """Check a site's images and split them per class with a seeded split."""
    require_classes(data, classes, where)
    train, val, test = stratified_split(
        data.labels.numpy(), val_fraction, test_fraction, seed
    )
    splits = SiteSplits(data.subset(train), data.subset(val), data.subset(test))
    splits.train.skipped, splits.train.excluded = data.skipped, data.excluded
    return splits


def split_for_run(data: DecodedImages, run: FedwardConfig, where: Path) -> SiteSplits:
    """:func:`split_site` with the run's classes, fractions and seed."""
    return split_site(
        data,
        run.classes,
        where,
        val_fraction=run.val_fraction,
        test_fraction=run.test_fraction,
        seed=run.seed,
    )


def iid_partition(labels: np.ndarray, num_parts: int, seed: int) -> list[np.ndarray]:
    """Shuffle and deal indices into ``num_parts`` near-equal parts."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_parts)]


def quantity_partition(
    labels: np.ndarray, num_parts: int, alpha: float, seed: int, minimum: int = 10
) -> list[np.ndarray]:
    """Parts of very different sizes, each with the pooled label mix.

    Sizes are proportional to one draw of Dir(alpha) (smaller ``alpha``: more
    skew), each part holding at least ``minimum`` images (fewer if there are
    not enough); images are dealt at random, so labels stay IID.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    floor = min(minimum, n // num_parts)
    shares = rng.dirichlet(np.full(num_parts, alpha))
    sizes = floor + np.floor(shares * (n - floor * num_parts)).astype(int)
    sizes[np.argmax(sizes)] += n - int(sizes.sum())
    order = rng.permutation(n)
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(part) for part in np.split(order, cuts)]


def dirichlet_partition(
    labels: np.ndarray, num_parts: int, alpha: float, seed: int
) -> list[np.ndarray]:
    """Label-skewed parts: each class is spread with proportions ~ Dir(alpha).

    Smaller ``alpha`` gives more skew. Every part gets at least one image.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(num_parts)]
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(num_parts, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
            part.extend(int(i) for i in chunk)
    for part in parts:  # give an empty part one image from the largest
        if not part:
            part.append(max(parts, key=len).pop())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
