"""NumPy archive source in the MedMNIST layout.

``train_images``, ``val_images``, ``test_images`` (``(N, H, W)`` or
``(N, H, W, 3)``, uint8) with ``train_labels`` etc. (``(N,)`` or ``(N, 1)``
class indices). A file with only ``images``/``labels`` gets a seeded split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import DecodedImages, SiteSplits
from fedward.data.decode import DecodeCache, Preprocess, fit_picture
from fedward.data.sources.registry import register_source
from fedward.data.splits import split_for_run
from fedward.errors import DataError

SPLIT_PREFIXES = {"train": "train", "val": "val", "test": "test"}


def _images(
    archive: np.lib.npyio.NpzFile, prefix: str, pre: Preprocess, num_classes: int
) -> DecodedImages:
    images = np.asarray(archive[f"{prefix}images"])
    labels = np.asarray(archive[f"{prefix}labels"]).reshape(-1).astype(np.int64)
    if images.ndim not in (3, 4) or len(images) != len(labels):
        raise DataError(
            f"'{prefix}images' {images.shape} and '{prefix}labels' {labels.shape} "
            "do not match the MedMNIST layout"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"'{prefix}labels' holds labels outside 0..{num_classes - 1}")
    if images.dtype != np.uint8:
        raise DataError(f"'{prefix}images' must be uint8, got {images.dtype}")
    tensors = [fit_picture(Image.fromarray(img), pre) for img in images]
    if not tensors:
        return DecodedImages.empty(pre.in_channels, pre.image_size)
    paths = [f"{prefix}{i}" for i in range(len(labels))]
    # numpy's single-threaded copy (see fedward.data.datasets.collect)
    stacked = torch.from_numpy(np.stack([t.numpy() for t in tensors]))
    return DecodedImages(stacked, torch.from_numpy(labels), paths)


@register_source("npz")
def npz_source(
    site: SiteConfig, run: FedwardConfig, pre: Preprocess, cache: DecodeCache | None
) -> SiteSplits:
    """Splits from the archive's own ``train_``/``val_``/``test_`` arrays."""
    path = Path(site.data_path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"npz file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable npz archive ({exc})") from None
    with archive:
        keys = set(archive.files)
        if {"train_images", "train_labels"} <= keys:
            parts = {
                split: _images(archive, f"{prefix}_", pre, run.num_classes)
                if f"{prefix}_images" in keys
                else DecodedImages.empty(pre.in_channels, pre.image_size)
                for split, prefix in SPLIT_PREFIXES.items()
            }
            return SiteSplits(parts["train"], parts["val"], parts["test"])
        if {"images", "labels"} <= keys:
            data = _images(archive, "", pre, run.num_classes)
            return split_for_run(data, run, path)
    raise DataError(f"{path}: no 'train_images'/'train_labels' (MedMNIST) arrays")
