"""Class-folder source: ``root/<class>/*.png`` or ``root/{train,val,test}/<class>/``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fedward.common.data.datasets import DecodedImages, SiteSplits, stratified_split
from fedward.common.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)
SPLITS = ("train", "val", "test")


def find_class_names(root: Path) -> list[str]:
    """Class folder names under ``root`` (or under ``root/train``), sorted."""
    base = root / "train" if (root / "train").is_dir() else root
    if not base.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    return sorted(p.name for p in base.iterdir() if p.is_dir())


def decode_image(path: Path, in_channels: int, image_size: int) -> torch.Tensor:
    """Decode one file to uint8 ``(C, H, W)`` at ``image_size`` x ``image_size``.

    Raises
    ------
    DataError
        If the file is not an image or does not decode.
    """
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"not an image file ({path.suffix or 'no extension'})")
    try:
        with Image.open(path) as img:
            converted = img.convert("L" if in_channels == 1 else "RGB")
        resized = converted.resize((image_size, image_size), Image.Resampling.BILINEAR)
        array = np.array(resized, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"does not decode: {exc}") from None
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy())


def load_folder(
    root: Path, classes: Sequence[str], in_channels: int, image_size: int
) -> DecodedImages:
    """Decode every image under ``root/<class>/``; skip and count what fails."""
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"{root}: class folders {unknown} are not among the configured classes "
            f"{list(classes)}"
        )
    images: list[torch.Tensor] = []
    labels: list[int] = []
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                images.append(decode_image(path, in_channels, image_size))
            except DataError as exc:
                logger.warning("skipped %s: %s", path, exc.problems[0])
                skipped.append((str(path), exc.problems[0]))
                continue
            labels.append(label)
            paths.append(str(path))
    if skipped:
        logger.warning("%s: skipped %d unusable file(s)", root, len(skipped))
    if not images:
        empty = DecodedImages.empty(in_channels, image_size)
        empty.skipped = skipped
        return empty
    return DecodedImages(
        torch.stack(images), torch.tensor(labels, dtype=torch.int64), paths, skipped
    )


def _require_classes(data: DecodedImages, classes: Sequence[str], where: Path) -> None:
    counts = data.class_counts(len(classes))
    present = [c for c, n in zip(classes, counts, strict=True) if n > 0]
    if len(present) < 2:
        raise DataError(
            f"{where}: needs usable images of at least two classes, found "
            f"{dict(zip(classes, counts, strict=True))}"
        )
    empty_folders = [
        c
        for c, n in zip(classes, counts, strict=True)
        if n == 0 and (where / c).is_dir()
    ]
    if empty_folders:
        raise DataError(
            f"{where}: class folder(s) {empty_folders} hold no usable image"
        )


def load_class_folders(
    root: Path,
    classes: Sequence[str],
    *,
    in_channels: int,
    image_size: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
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
            s: load_folder(root / s, classes, in_channels, image_size)
            if (root / s).is_dir()
            else DecodedImages.empty(in_channels, image_size)
            for s in SPLITS
        }
        _require_classes(parts["train"], classes, root / "train")
        return SiteSplits(parts["train"], parts["val"], parts["test"])
    data = load_folder(root, classes, in_channels, image_size)
    _require_classes(data, classes, root)
    train, val, test = stratified_split(
        data.labels.numpy(), val_fraction, test_fraction, seed
    )
    splits = SiteSplits(data.subset(train), data.subset(val), data.subset(test))
    splits.train.skipped = data.skipped
    return splits
