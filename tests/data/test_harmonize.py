"""Nyúl-Udupa harmonisation: each site's landmarks land on the standard scale."""

import numpy as np
import pytest
import torch

from fedward.data.harmonize import (
    PERCENTILES,
    check_scale,
    harmonize_image,
    harmonize_images,
    image_landmarks,
    site_landmarks,
    standard_scale,
    uint8_percentiles,
)
from fedward.errors import DataError
from fedward.fl.data_check import harmonize_scale


def scanner(
    n: int, gamma: float, contrast: float, offset: float, seed: int
) -> torch.Tensor:
    """uint8 images (N, 3, 32, 32) of one anatomy through one intensity curve."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1:1:32j, -1:1:32j]
    images = []
    for _ in range(n):
        body = np.clip(1 - (x**2 + y**2), 0, 1) * rng.uniform(0.7, 0.9)
        body += rng.normal(0, 0.03, body.shape)
        pixels = np.clip(np.clip(body, 0, 1) ** gamma * contrast + offset, 0, 1)
        images.append(np.repeat((pixels * 255).astype(np.uint8)[None], 3, axis=0))
    return torch.from_numpy(np.stack(images))


SITES = {
    "a": scanner(12, 1.0, 1.0, 0.0, 0),
    "b": scanner(20, 0.6, 0.8, 0.1, 1),  # another scanner's curve
}


def test_each_sites_landmarks_map_onto_the_standard_scale() -> None:
    means = {name: site_landmarks(images) for name, images in SITES.items()}
    scale = standard_scale(list(means.values()))

    for images in SITES.values():
        mapped = harmonize_images(images, scale)
        marks = np.mean([image_landmarks(i) for i in mapped.numpy()], axis=0)
        assert mapped.dtype == torch.uint8
        assert np.abs(marks - scale).max() < 2.0  # grey levels, after rounding
    # before, the two scanners' landmarks were far apart
    before = [
        np.mean([image_landmarks(i) for i in s.numpy()], 0) for s in SITES.values()
    ]
    assert np.abs(before[0] - before[1]).max() > 20


def test_the_standard_scale_is_the_image_weighted_mean_of_the_sites() -> None:
    (a, n_a), (b, n_b) = site_landmarks(SITES["a"]), site_landmarks(SITES["b"])

    scale = standard_scale([(a, n_a), (b, n_b)])

    assert (n_a, n_b) == (12, 20)
    assert scale[0] == pytest.approx(0.0)
    assert scale[-1] == pytest.approx(255.0)
    assert np.allclose(scale, (np.array(a) * 12 + np.array(b) * 20) / 32)


def test_the_server_forms_the_scale_from_the_data_check_aggregates_only() -> None:
    stats = {
        name: {"intensity": {"landmarks": {"mean": m, "images": n}}}
        for name, (m, n) in ((k, site_landmarks(v)) for k, v in SITES.items())
    }

    scale = harmonize_scale(stats)

    assert scale == standard_scale([site_landmarks(v) for v in SITES.values()])
    with pytest.raises(DataError, match="no hospital"):
        harmonize_scale({"a": {"intensity": {}}})


def test_a_malformed_scale_is_refused() -> None:
    with pytest.raises(DataError, match="landmarks"):
        check_scale([0.0, 255.0])
    with pytest.raises(DataError, match="not increasing"):
        check_scale(list(np.linspace(255, 0, len(PERCENTILES))))


@pytest.mark.parametrize(
    ("low", "high", "n"),
    [(0, 256, 1), (0, 256, 7), (0, 256, 4099), (100, 101, 50), (30, 40, 1000)],
)
def test_percentiles_from_the_histogram_are_numpys_bit_for_bit(
    low: int, high: int, n: int
) -> None:
    pixels = np.random.default_rng(n).integers(low, high, n, dtype=np.uint8)
    q = [*PERCENTILES, 0.0, 100.0, 12.5, 33.3, 66.7]

    assert np.array_equal(uint8_percentiles(pixels, q), np.percentile(pixels, q))


def test_the_lookup_table_maps_every_pixel_as_interpolation_does() -> None:
    scale = check_scale(standard_scale([site_landmarks(s) for s in SITES.values()]))
    for image in SITES["b"].numpy():
        marks = image_landmarks(image) + np.arange(len(PERCENTILES)) * 1e-6
        per_pixel = np.interp(image.astype(np.float64), marks, scale)
        expected = np.clip(np.rint(per_pixel), 0, 255).astype(np.uint8)

        assert np.array_equal(harmonize_image(image, scale), expected)
