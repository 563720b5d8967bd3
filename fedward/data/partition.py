"""Which images each simulated hospital holds.

A simulation gives each virtual hospital a partition id; with ``by-folder``
partitioning it gets one hospital folder of the run's data, otherwise a share
of the pooled images (IID, Dirichlet label skew or quantity skew,
:mod:`fedward.data.splits`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from fedward.config import FedwardConfig
from fedward.data.datasets import DecodedImages, SiteSplits
from fedward.data.decode import Preprocess
from fedward.data.discovery import hospital_folders, is_per_hospital
from fedward.data.load import load_site, site_for_folder
from fedward.data.sources.folders import load_folder
from fedward.data.splits import (
    dirichlet_partition,
    iid_partition,
    quantity_partition,
    stratified_split,
)
from fedward.errors import ConfigError, DataError


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

    Raises
    ------
    ConfigError
        If the run names no data, or its hospital folders do not match the
        number of simulated hospitals.
    DataError
        If the data folder does not exist.
    """
    if not config.data_root:
        raise ConfigError(
            "config: 'data-root' is empty; a simulated hospital needs data "
            "(fedward simulate writes the demo; with flwr run, set data-root to "
            "a folder written by 'fedward data demo')"
        )
    root = Path(config.data_root)
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
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
    elif config.partition == "quantity":
        parts = quantity_partition(
            labels, num_partitions, config.dirichlet_alpha, config.seed
        )
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
