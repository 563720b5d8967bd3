"""One file to one uint8 ``(C, H, W)`` tensor, for image files and DICOM alike.

Decoded arrays can be cached on the site's disk, keyed by the file's content and
the preprocessing settings, so later epochs, rounds and runs skip decoding.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fedward.data.dicom import (
    DicomOptions,
    decode_dicom,
    header_matches,
    is_dicom,
    read_dataset,
)
from fedward.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)


class NotSelected(Exception):  # noqa: N818 - a verdict, not a failure
    """A DICOM file whose header does not match the site's filters."""


@dataclass(frozen=True)
class Preprocess:
    """What every source does to a file: channels, square size, DICOM options."""

    in_channels: int = 3
    image_size: int = 150
    dicom: DicomOptions = field(default_factory=DicomOptions)

    def key(self) -> str:
        """A short digest of the settings, part of every cache key."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


def fit_picture(pil: Image.Image, pre: Preprocess) -> torch.Tensor:
    """Convert to the model's channels, resize, and return uint8 ``(C, H, W)``."""
    pil = pil.convert("L" if pre.in_channels == 1 else "RGB")
    pil = pil.resize((pre.image_size, pre.image_size), Image.Resampling.BILINEAR)
    array = np.array(pil, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def decode_picture(path: Path, pre: Preprocess) -> torch.Tensor:
    """PNG, JPEG and other picture files through Pillow."""
    try:
        with Image.open(path) as img:
            img.load()
            return fit_picture(img, pre)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"does not decode: {exc}") from None


def decode_dicom_file(path: Path, pre: Preprocess) -> torch.Tensor:
    """A DICOM file, after the header filters of ``pre.dicom``.

    Raises
    ------
    NotSelected
        If the header does not match the filters.
    DataError
        If the file cannot be used.
    """
    if pre.dicom.select and not header_matches(read_dataset(path), pre.dicom.select):
        raise NotSelected(str(path))
    unit = decode_dicom(path, pre.dicom)
    pil = Image.fromarray(np.round(unit * 255.0).astype(np.uint8))
    return fit_picture(pil, pre)


def decode_file(path: Path, pre: Preprocess) -> torch.Tensor:
    """Decode a picture (by suffix) or a DICOM file (by content).

    Raises
    ------
    NotSelected
        A DICOM file the site's header filters leave out.
    DataError
        If the file is neither, or cannot be decoded; the message is the reason.
    """
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return decode_picture(path, pre)
    if is_dicom(path):
        return decode_dicom_file(path, pre)
    raise DataError(f"not an image or DICOM file ({path.suffix or 'no extension'})")


class DecodeCache:
    """Decoded tensors on disk, keyed by file content and preprocessing.

    A failure is cached too (its reason), so a broken file is not decoded again.
    ``hits`` and ``misses`` count look-ups since creation.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0
        self.write_failed = False

    def _key(self, path: Path, pre: Preprocess) -> Path:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return self.root / pre.key() / digest[:2] / digest

    def decode(self, path: Path, pre: Preprocess) -> torch.Tensor:
        """Like :func:`decode_file`, from the cache when possible."""
        try:
            key = self._key(path, pre)
        except OSError as exc:
            raise DataError(f"unreadable: {exc.strerror}") from None
        array_file, error_file = key.with_suffix(".npy"), key.with_suffix(".err")
        if array_file.is_file():
            self.hits += 1
            return torch.from_numpy(np.load(array_file))
        if error_file.is_file():
            self.hits += 1
            raise DataError(error_file.read_text(encoding="utf-8"))
        self.misses += 1
        try:
            tensor = decode_file(path, pre)
        except DataError as exc:
            self._store(error_file, exc.problems[0].encode())
            raise
        buffer = io.BytesIO()
        np.save(buffer, tensor.numpy())
        self._store(array_file, buffer.getvalue())
        return tensor

    def _store(self, target: Path, data: bytes) -> None:
        """Write through a temporary file; a full or read-only disk only warns."""
        tmp = target.with_name(target.name + ".tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(target)
        except OSError as exc:
            if not self.write_failed:
                logger.warning("decode cache not written (%s)", exc.strerror)
            self.write_failed = True


def decode(path: Path, pre: Preprocess, cache: DecodeCache | None) -> torch.Tensor:
    """Decode through ``cache`` when there is one."""
    return cache.decode(path, pre) if cache is not None else decode_file(path, pre)
