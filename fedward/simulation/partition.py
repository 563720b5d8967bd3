"""Which images each simulated hospital holds."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

import numpy as np
import torch

from fedward.common.config import FedwardConfig, SiteConfig
from fedward.common.data.datasets import DecodedImages, SiteSplits, stratified_split
from fedward.common.data.decode import Preprocess
from fedward.common.data.folders import find_class_names, load_folder
from fedward.common.data.sources import (
    load_site,
    site_for_folder,
)
from fedward.common.errors import ConfigError, DataError
from fedward.simulation.demo import demo_root, ensure_demo

logger = logging.getLogger(__name__)


def resolve_data_root(config: FedwardConfig) -> Path:
    """The data folder of a run; the built-in demo is written when no folder is set.

    Raises
    ------
    DataError
        If a configured data folder does not exist.
    """
    if not config.data_root:
        root = demo_root(config.num_hospitals, config.seed)
        if ensure_demo(root, config.num_hospitals, config.seed):
            logger.info("wrote synthetic demo data to %s", root)
        return root
    root = Path(config.data_root)
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    return root


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


def is_per_hospital(root: Path) -> bool:
    """Whether ``root`` holds one folder per hospital (folders of folders).

    Otherwise its subfolders are class folders of one pooled set.
    """
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    return any(
        child.is_dir()
        for sub in root.iterdir()
        if sub.is_dir()
        for child in sub.iterdir()
    )


def site_configs(paths: list[Path]) -> list[SiteConfig]:
    """Sites named by paths: ``site.toml`` files, site folders, folders of sites.

    Raises
    ------
    DataError
        If a path does not exist.
    """
    sites = []
    for path in paths:
        if path.is_file():
            sites.append(SiteConfig.from_site_file(path))
        elif path.is_dir() and is_per_hospital(path):
            sites.extend(site_for_folder(f) for f in hospital_folders(path))
        elif path.is_dir():
            sites.append(site_for_folder(path))
        else:
            raise DataError(f"no such site folder or file: {path}")
    return sites


def data_class_names(root: Path) -> list[str]:
    """Class names found in a pooled or per-hospital data folder, sorted."""
    if not is_per_hospital(root):
        return find_class_names(root)
    names: set[str] = set()
    for folder in hospital_folders(root):
        names.update(find_class_names(folder))
    return sorted(names)


@functools.lru_cache(maxsize=2)
def load_pooled(root: Path, config: FedwardConfig) -> DecodedImages:
    """Every image under ``root``: class folders directly, or one folder per hospital.

    Cached per process so each simulated hospital does not decode the pool again.
    """
    if not is_per_hospital(root):
        pre = Preprocess(config.in_channels, config.image_size)
        return load_folder(root, config.classes, pre)
    parts = []
    for folder in hospital_folders(root):
        splits = load_site(site_for_folder(folder), config)
        parts.extend([splits.train, splits.val, splits.test])
    return DecodedImages(
        torch.cat([p.images for p in parts]),
        torch.cat([p.labels for p in parts]),
        [path for p in parts for path in p.paths],
        [skip for p in parts for skip in p.skipped],
    )


def simulated_site(
    config: FedwardConfig, partition_id: int, num_partitions: int
) -> tuple[str, SiteSplits]:
    """The name and images of simulated hospital ``partition_id``.

    With the built-in demo, the demo has one hospital per partition (so that
    ``flwr run .`` with any number of SuperNodes works).
    """
    if not config.data_root:
        config = dataclasses.replace(config, num_hospitals=num_partitions)
    root = resolve_data_root(config)
    if config.partition == "by-folder":
        folders = hospital_folders(root)
        if len(folders) != num_partitions:
            raise ConfigError(
                f"config: {root} has {len(folders)} hospital folders but the "
                f"simulation runs {num_partitions} hospitals"
            )
        site = site_for_folder(folders[partition_id])
        return site.name, load_site(site, config)
    pooled = load_pooled(root, config)
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
