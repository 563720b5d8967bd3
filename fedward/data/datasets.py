"""Decoded image sets, seeded stratified splits and the torch ``Dataset``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fedward.data.decode import DecodeCache, NotSelected, Preprocess, RawFile, decode
from fedward.errors import DataError

logger = logging.getLogger(__name__)

Item = dict[str, Any]
Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DecodedImages:
    """Images decoded once and kept as uint8 ``(N, C, H, W)`` with their labels."""

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    excluded: int = 0  # DICOM files the site's header filters leave out

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def empty(cls, in_channels: int, image_size: int) -> DecodedImages:
        """A set with no images."""
        shape = (0, in_channels, image_size, image_size)
        return cls(
            torch.empty(shape, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), []
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> DecodedImages:
        """The images at ``indices`` (skipped files are not carried over)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return DecodedImages(
            self.images[idx], self.labels[idx], [self.paths[int(i)] for i in idx]
        )

    def class_counts(self, num_classes: int) -> list[int]:
        """Number of images per label."""
        counts = torch.bincount(self.labels, minlength=num_classes)
        return [int(c) for c in counts]


def collect(
    labelled: Iterable[tuple[Path | RawFile, int]],
    root: Path,
    pre: Preprocess,
    cache: DecodeCache | None = None,
) -> DecodedImages:
    """Decode ``(file, label)`` pairs; record each unusable file with its reason.

    A file is a path, or a :class:`RawFile` a source has already read; pairs may
    come from a generator, so only one file's bytes are held at a time. Paths in
    warnings and in ``skipped`` are relative to ``root``.
    """
    images: list[torch.Tensor] = []
    labels: list[int] = []
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    excluded = 0
    for source, label in labelled:
        path = source.path if isinstance(source, RawFile) else source
        shown = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        try:
            images.append(decode(source, pre, cache))
        except NotSelected:
            excluded += 1
            continue
        except DataError as exc:
            # the log gets the reason's kind only: a decoder's detail may quote a
            # header value; the site-local quarantine report keeps all of it
            logger.warning(
                "skipped %s: %s", shown, ": ".join(exc.problems[0].split(": ")[:2])
            )
            skipped.append((shown, exc.problems[0]))
            continue
        labels.append(label)
        paths.append(str(path))
    if cache is not None:
        cache.flush()
    if skipped:
        logger.warning("%s: skipped %d unusable file(s)", root, len(skipped))
    if not images:
        empty = DecodedImages.empty(pre.in_channels, pre.image_size)
        empty.skipped, empty.excluded = skipped, excluded
        return empty
    # a single-threaded copy: torch's parallel stack can stall for seconds when
    # the machine's cores are busy with other work
    stacked = torch.from_numpy(np.stack([image.numpy() for image in images]))
    return DecodedImages(
        stacked, torch.tensor(labels, dtype=torch.int64), paths, skipped, excluded
    )


@dataclass
class SiteSplits:
    """A site's train, validation and test images."""

    train: DecodedImages
    val: DecodedImages
    test: DecodedImages

    def skipped(self) -> list[tuple[str, str]]:
        """Unusable files of every split, with their reasons."""
        return [s for part in (self.train, self.val, self.test) for s in part.skipped]

    def total(self) -> int:
        """Usable images in all splits."""
        return len(self.train) + len(self.val) + len(self.test)

    def get(self, split: str) -> DecodedImages:
        """The split named ``train``, ``val`` or ``test``."""
        return {"train": self.train, "val": self.val, "test": self.test}[split]


class ImageDataset(Dataset[Item]):
    """Items ``{"image", "label", "meta"}`` from decoded uint8 images."""

    def __init__(self, data: DecodedImages, transform: Transform) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Item:
        return {
            "image": self.transform(self.data.images[index]),
            "label": int(self.data.labels[index]),
            "meta": {"path": self.data.paths[index]},
        }


def make_loader(
    data: DecodedImages,
    transform: Transform,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
) -> DataLoader[Item]:
    """A DataLoader whose shuffling order depends only on ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        ImageDataset(data, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        persistent_workers=False,
    )
