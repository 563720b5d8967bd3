"""Intensity harmonisation across scanners: Nyúl–Udupa histogram standardisation.

Nyúl, Udupa & Zhang (2000), "New variants of a method of MRI scale
standardization". Each image's intensity landmarks (the percentiles
:data:`PERCENTILES` of its pixels) are mapped piecewise-linearly onto a
*standard scale*, a set of landmarks learnt from training images, so that the
same tissue lands on the same grey level whatever the scanner's intensity curve.

Federated (``harmonize = "histogram"``): each hospital maps every training
image's landmarks linearly so that its first and last fall on 0 and 255, and
sends only their mean and the number of images (:func:`site_landmarks`, part of
the pre-training data check); the server's standard scale is the
image-weighted mean of those means (:func:`standard_scale`); every hospital then
maps each image onto it in training, evaluation and prediction
(:func:`harmonize_images`), and the scale is saved in the model card. Plain
NumPy, no Flower.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fedward.errors import DataError

PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
LOW, HIGH = 0.0, 255.0  # the standard scale's range: first and last landmark


def uint8_percentiles(pixels: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(pixels, q)`` of uint8 pixels, read off their histogram.

    The same numbers as NumPy's default (linear) method, bit for bit: the k-th
    smallest pixel is the first grey level whose cumulative count exceeds k,
    and the interpolation is NumPy's own (``numpy.lib._function_base_impl._lerp``
    as written out below). Counting 256 grey levels is much faster than the
    partial sort ``np.percentile`` does on every pixel.
    """
    if pixels.dtype != np.uint8:
        raise DataError(
            f"percentiles from a histogram need uint8 pixels, not {pixels.dtype}"
        )
    counts = np.bincount(pixels.ravel(), minlength=256)
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    if n == 0:
        raise DataError("percentiles of an image without pixels")
    index = (n - 1) * np.true_divide(np.asarray(q, dtype=np.float64), 100)
    below = np.floor(index)
    above = np.minimum(below + 1, n - 1)
    a = np.searchsorted(cumulative, below, side="right").astype(np.float64)
    b = np.searchsorted(cumulative, above, side="right").astype(np.float64)
    t = index - below
    diff = b - a
    values: np.ndarray = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    return values


def image_landmarks(pixels: np.ndarray) -> np.ndarray:
    """The :data:`PERCENTILES` of one uint8 image's pixels (all channels together)."""
    return uint8_percentiles(pixels, PERCENTILES)


def _increasing(landmarks: np.ndarray) -> np.ndarray:
    # ties (a flat background) would make the piecewise-linear map ambiguous
    out: np.ndarray = landmarks + np.arange(len(landmarks)) * 1e-6
    return out


def site_landmarks(images: torch.Tensor) -> tuple[list[float], int]:
    """Mean landmarks of a site's uint8 images ``(N, C, H, W)``, on [0, 255].

    Each image's landmarks are first mapped linearly so that its first lies on
    :data:`LOW` and its last on :data:`HIGH`; images of a single grey level are
    left out. Returns the mean and the number of images it is taken over.
    """
    mapped = []
    for image in images.numpy():
        marks = image_landmarks(image)
        span = marks[-1] - marks[0]
        if span > 0:
            mapped.append(LOW + (marks - marks[0]) / span * (HIGH - LOW))
    if not mapped:
        return [], 0
    return [float(v) for v in np.mean(mapped, axis=0)], len(mapped)


def standard_scale(sites: Sequence[tuple[Sequence[float], int]]) -> list[float]:
    """The image-weighted mean of the sites' mean landmarks.

    Raises
    ------
    DataError
        If no site has landmarks, or they are not of :data:`PERCENTILES`' length.
    """
    usable = [(np.asarray(m, dtype=np.float64), n) for m, n in sites if n > 0]
    if not usable:
        raise DataError("harmonisation: no hospital reported intensity landmarks")
    if any(m.shape != (len(PERCENTILES),) for m, _ in usable):
        raise DataError(
            f"harmonisation: landmarks must be {len(PERCENTILES)} values per site"
        )
    total = sum(n for _, n in usable)
    scale = np.sum([m * n for m, n in usable], axis=0) / total
    return [float(v) for v in scale]


def check_scale(scale: Sequence[float]) -> np.ndarray:
    """A standard scale as an array, checked.

    Raises
    ------
    DataError
        If it has the wrong length, is not increasing or leaves [0, 255].
    """
    values = np.asarray(scale, dtype=np.float64)
    if values.shape != (len(PERCENTILES),):
        raise DataError(
            f"harmonisation: the standard scale needs {len(PERCENTILES)} landmarks, "
            f"got {values.size}"
        )
    if not np.isfinite(values).all() or (np.diff(values) < 0).any():
        raise DataError("harmonisation: the standard scale is not increasing")
    if values[0] < LOW or values[-1] > HIGH:
        raise DataError("harmonisation: the standard scale leaves [0, 255]")
    return values


def harmonize_image(pixels: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """One uint8 image mapped from its own landmarks onto ``scale``.

    Piecewise linear between landmarks; intensities below the first or above
    the last landmark go to the scale's ends. The map is worked out once for
    each of the 256 grey levels and looked up per pixel, which gives the same
    bytes as interpolating every pixel.
    """
    marks = _increasing(image_landmarks(pixels))
    if marks[-1] - marks[0] <= 1e-3:  # a single grey level: nothing to map
        return pixels
    levels = np.interp(np.arange(256, dtype=np.float64), marks, scale)
    table = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
    out: np.ndarray = table[pixels]
    return out


def harmonize_images(images: torch.Tensor, scale: Sequence[float]) -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` (or one ``(C, H, W)``) mapped onto ``scale``."""
    values = check_scale(scale)
    array = images.numpy()
    if array.ndim == 3:
        return torch.from_numpy(harmonize_image(array, values))
    out = (
        np.stack([harmonize_image(image, values) for image in array])
        if len(array)
        else array.copy()
    )
    return torch.from_numpy(out)
