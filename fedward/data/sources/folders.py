"""Class-folder source: ``root/<class>/*`` or ``root/{train,val,test}/<class>/``.

Files are pictures (PNG, JPEG, ...) or DICOM (found by content); both kinds may
sit side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import DecodedImages, SiteSplits, collect
from fedward.data.decode import DecodeCache, Preprocess
from fedward.data.discovery import list_files, subfolders
from fedward.data.sources.registry import register_source
from fedward.data.splits import SPLITS, require_classes, split_site
from fedward.errors import DataError

logger = logging.getLogger(__name__)


def load_folder(
    root: Path,
    classes: Sequence[str],
    pre: Preprocess,
    cache: DecodeCache | None = None,
) -> DecodedImages:
    """Decode every file under ``root/<class>/``; skip and record what fails."""
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    found = {p.name for p in subfolders(root)}
    unknown = sorted(found - set(classes))
    if unknown:
        raise DataError(
            f"{root}: class folders {unknown} are not among the configured classes "
            f"{list(classes)}"
        )
    labelled = [
        (path, label)
        for label, name in enumerate(classes)
        if (root / name).is_dir()
        for path in list_files(root / name)
    ]
    return collect(labelled, root, pre, cache)


def load_class_folders(
    root: Path,
    classes: Sequence[str],
    *,
    pre: Preprocess,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    cache: DecodeCache | None = None,
) -> SiteSplits:
    """Load a site's images, using ``train/val/test`` folders if present.

    Without split folders the images are split per class with a seeded,
    stratified split.

    Raises
    ------
    DataError
        If the path does not exist, a class folder has no usable image, or fewer
        than two classes have images.
    """
    if (root / "train").is_dir():
        parts = {
            s: load_folder(root / s, classes, pre, cache)
            if (root / s).is_dir()
            else DecodedImages.empty(pre.in_channels, pre.image_size)
            for s in SPLITS
        }
        require_classes(parts["train"], classes, root / "train")
        return SiteSplits(parts["train"], parts["val"], parts["test"])
    data = load_folder(root, classes, pre, cache)
    return split_site(
        data,
        classes,
        root,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )


@register_source("folders")
def folders_source(
    site: SiteConfig, run: FedwardConfig, pre: Preprocess, cache: DecodeCache | None
) -> SiteSplits:
    """Class folders of pictures and/or DICOM files."""
    return load_class_folders(
        Path(site.data_path),
        run.classes,
        pre=pre,
        val_fraction=run.val_fraction,
        test_fraction=run.test_fraction,
        seed=run.seed,
        cache=cache,
    )
