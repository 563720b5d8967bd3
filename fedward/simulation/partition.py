"""Which images each simulated hospital holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedward.common.config import FedwardConfig
from fedward.common.data.datasets import DecodedImages, SiteSplits, stratified_split
from fedward.common.data.folders import load_class_folders, load_folder
from fedward.common.errors import ConfigError, DataError


def iid_partition(labels: np.ndarray, num_parts: int, seed: int) -> list[np.ndarray]:
    """Shuffle and deal indices into ``num_parts`` near-equal parts."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_parts)]


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


def hospital_folders(root: Path) -> list[Path]:
    """One folder per hospital under ``root``, sorted by name."""
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{root} holds no hospital folders")
    return folders


def simulated_site(
    config: FedwardConfig, partition_id: int, num_partitions: int
) -> tuple[str, SiteSplits]:
    """The name and images of simulated hospital ``partition_id``."""
    root = Path(config.data_root)
    shape = {"in_channels": config.in_channels, "image_size": config.image_size}
    if config.partition == "by-folder":
        folders = hospital_folders(root)
        if len(folders) != num_partitions:
            raise ConfigError(
                f"config: {root} has {len(folders)} hospital folders but the "
                f"simulation runs {num_partitions} hospitals"
            )
        folder = folders[partition_id]
        splits = load_class_folders(
            folder,
            config.classes,
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            seed=config.seed,
            **shape,
        )
        return folder.name, splits
    pooled = load_folder(root, config.classes, **shape)
    labels = pooled.labels.numpy()
    if config.partition == "iid":
        parts = iid_partition(labels, num_partitions, config.seed)
    else:
        parts = dirichlet_partition(
            labels, num_partitions, config.dirichlet_alpha, config.seed
        )
    mine: DecodedImages = pooled.subset(parts[partition_id])
    train, val, test = stratified_split(
        mine.labels.numpy(), config.val_fraction, config.test_fraction, config.seed
    )
    name = f"hospital-{partition_id + 1}"
    return name, SiteSplits(mine.subset(train), mine.subset(val), mine.subset(test))
