"""Class-folder source: ``root/<class>/*`` or ``root/{train,val,test}/<class>/``.

Files are pictures (PNG, JPEG, ...) or DICOM (found by content); both kinds may
sit side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from fedward.common.config import FedwardConfig, SiteConfig
from fedward.common.data.datasets import (
    DecodedImages,
    SiteSplits,
    collect,
    stratified_split,
)
from fedward.common.data.decode import DecodeCache, Preprocess
from fedward.common.data.registry import register_source
from fedward.common.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def find_class_names(root: Path) -> list[str]:
    """Class folder names under ``root`` (or under ``root/train``), sorted."""
    base = root / "train" if (root / "train").is_dir() else root
    if not base.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not _hidden(p))


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def list_files(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder``, sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def load_folder(
    root: Path,
    classes: Sequence[str],
    pre: Preprocess,
    cache: DecodeCache | None = None,
) -> DecodedImages:
    """Decode every file under ``root/<class>/``; skip and record what fails."""
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    found = {p.name for p in root.iterdir() if p.is_dir() and not _hidden(p)}
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


def _require_classes(data: DecodedImages, classes: Sequence[str], where: Path) -> None:
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
    _require_classes(data, classes, where)
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
        _require_classes(parts["train"], classes, root / "train")
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
