"""DICOM decoding: found by content, pixel values mapped as a viewer would show them.

Order of operations for grayscale images: modality LUT (rescale slope and
intercept), then the configured window, else the file's VOI LUT or window, else
the image's own range; MONOCHROME1 is inverted so that bright means dense. Colour
images (RGB, YBR, palette) become RGB. One frame is taken from multi-frame images.
Header values never leave this module except the non-identifying ones listed in
:data:`HEADER_FIELDS`.
"""

from __future__ import annotations

import fnmatch
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
)
from pydicom.pixels.utils import pixel_array

from fedward.errors import DataError

# Header fields a site may report in aggregate (never identifying).
HEADER_FIELDS = (
    "Modality",
    "BodyPartExamined",
    "ViewPosition",
    "SeriesDescription",
    "PhotometricInterpretation",
    "BitsStored",
    "Rows",
    "Columns",
    "NumberOfFrames",
)

pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


@dataclass(frozen=True)
class DicomOptions:
    """How DICOM pixels become model input.

    Parameters
    ----------
    frame
        Frame of a multi-frame image; -1 takes the middle one.
    window_center, window_width
        A fixed window in modality units (e.g. Hounsfield); width 0 uses the
        file's own VOI LUT or window, else the image's range.
    select
        Header filters, ``{"Modality": "CR|DX", "SeriesDescription": "*PA*"}``:
        shell patterns, ``|`` separates alternatives, case-insensitive.
    """

    frame: int = -1
    window_center: float = 0.0
    window_width: float = 0.0
    select: tuple[tuple[str, str], ...] = ()


def is_dicom(source: Path | bytes) -> bool:
    """Whether a file (its path or its bytes) holds DICOM.

    The ``DICM`` marker decides; files without the 128-byte preamble are accepted
    when they parse and name an SOP class or a modality.
    """
    if isinstance(source, bytes):
        head = source[:132]
    else:
        try:
            with source.open("rb") as fh:
                head = fh.read(132)
        except OSError:
            return False
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(_readable(source), force=True, stop_before_pixels=True)
        return "SOPClassUID" in ds or "Modality" in ds
    except Exception:
        return False


def read_dataset(source: Path | bytes, *, pixels: bool = False) -> Dataset:
    """The DICOM dataset of a file (its path or its bytes), with pixels if ``pixels``.

    Raises
    ------
    DataError
        If the file does not parse as DICOM.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(
                _readable(source), stop_before_pixels=not pixels, force=True
            )
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(f"not DICOM: {type(exc).__name__}") from None


def _readable(source: Path | bytes) -> Path | io.BytesIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def header_matches(ds: Dataset, select: tuple[tuple[str, str], ...]) -> bool:
    """Whether every ``(keyword, pattern)`` filter matches the header."""
    for keyword, pattern in select:
        value = str(ds.get(keyword, "") or "").upper()
        if not any(
            fnmatch.fnmatchcase(value, p.strip().upper()) for p in pattern.split("|")
        ):
            return False
    return True


def header_summary(ds: Dataset) -> dict[str, str]:
    """The non-identifying header fields of :data:`HEADER_FIELDS`, as strings."""
    return {k: str(ds.get(k, "") or "") for k in HEADER_FIELDS}


def _frame(ds: Dataset, frame: int) -> np.ndarray:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    index = frames // 2 if frame < 0 else frame
    if index >= frames:
        raise DataError(f"frame {index} asked for, the image has {frames}")
    array: np.ndarray = pixel_array(ds, index=index if frames > 1 else None)
    return array


def _window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM's linear window (PS3.3 C.11.2.1.2), scaled to [0, 1], in place."""
    if width <= 1:
        return (values > center - 0.5).astype(np.float32)
    values -= np.float32(center - 0.5)
    values /= np.float32(width - 1)
    values += np.float32(0.5)
    return np.clip(values, 0.0, 1.0, out=values)


def _first(value: Any) -> float:
    """The first of a possibly multi-valued number (files may list several windows)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return float(value)
    return float(value[0])


def _to_unit_range(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32) - np.float32(low)
    values /= np.float32(high - low)
    return values


def _modality(ds: Dataset, raw: np.ndarray) -> np.ndarray:
    """The modality LUT applied, as a new float32 array.

    Numeric rescale slope and intercept are applied here; a modality LUT
    sequence, or odd rescale values, go through pydicom.
    """
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    rescale = isinstance(slope, int | float) and isinstance(intercept, int | float)
    if not rescale or ds.get("ModalityLUTSequence"):
        return np.array(apply_modality_lut(raw, ds), dtype=np.float32)
    values = raw.astype(np.float32)
    if slope != 1:
        values *= np.float32(slope)
    if intercept != 0:
        values += np.float32(intercept)
    return values


def _grayscale(ds: Dataset, raw: np.ndarray, options: DicomOptions) -> np.ndarray:
    values = _modality(ds, raw)
    if options.window_width > 0:
        unit = _window(values, options.window_center, options.window_width)
    elif "VOILUTSequence" in ds:
        unit = _to_unit_range(np.asarray(apply_voi_lut(values, ds)))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        unit = _window(values, _first(ds.WindowCenter), _first(ds.WindowWidth))
    else:
        unit = _to_unit_range(values)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        unit = np.subtract(np.float32(1.0), unit, out=unit)
    return unit


def _colour(ds: Dataset, raw: np.ndarray) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(raw, ds), dtype=np.float32)
        return rgb / np.float32(255.0 if rgb.max() <= 255 else 65535.0)
    bits = int(ds.get("BitsStored", 8) or 8)
    return np.asarray(raw, dtype=np.float32) / np.float32(2**bits - 1)


def decode_dicom(source: Path | bytes | Dataset, options: DicomOptions) -> np.ndarray:
    """Pixels in [0, 1] as float32 ``(H, W)`` (grayscale) or ``(H, W, 3)`` (RGB).

    ``source`` is a file's path, its bytes, or its dataset read with pixels.

    Raises
    ------
    DataError
        With the reason: not DICOM, no pixel data, undecodable, truncated, an
        unsupported layout or non-finite values.
    """
    ds = source if isinstance(source, Dataset) else read_dataset(source, pixels=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        if "SOPClassUID" not in ds and "PatientID" not in ds:
            raise DataError("not DICOM")
        raise DataError("no pixel data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = _frame(ds, options.frame)
            photometric = str(ds.get("PhotometricInterpretation", ""))
            if (
                int(ds.get("SamplesPerPixel", 1) or 1) == 1
                and photometric != "PALETTE COLOR"
            ):
                unit = _grayscale(ds, raw, options)
            else:
                unit = _colour(ds, raw)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"undecodable: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    if unit.ndim == 3 and unit.shape[-1] != 3:
        raise DataError(f"unsupported pixel layout {unit.shape}")
    if unit.ndim not in (2, 3) or min(unit.shape[:2]) < 2:
        raise DataError(f"unsupported image shape {unit.shape}")
    if not np.isfinite(unit).all():
        raise DataError("pixel values are not finite")
    pixels = np.asarray(unit, dtype=np.float32)
    return np.clip(pixels, 0.0, 1.0, out=pixels)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else ""


def parse_select(text: str) -> tuple[tuple[str, str], ...]:
    """``"Modality=CR|DX; BodyPartExamined=CHEST"`` as filter pairs.

    Raises
    ------
    DataError
        If a part is not ``Keyword=pattern`` or names no DICOM keyword.
    """
    pairs: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        keyword, sep, pattern = part.partition("=")
        keyword = keyword.strip()
        if not sep or not pattern.strip():
            raise DataError(f"header filter {part!r} is not Keyword=pattern")
        if pydicom.datadict.tag_for_keyword(keyword) is None:
            raise DataError(f"header filter names no DICOM keyword: {keyword!r}")
        pairs.append((keyword, pattern.strip()))
    return tuple(pairs)
