"""Shared fixtures: tiny on-disk image sets written into ``tmp_path``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import SiteSplits
from fedward.data.load import load_site

WriteFolder = Callable[..., Path]


def site_data(root: Path, config: FedwardConfig) -> SiteSplits:
    """A class-folder site's splits, as a hospital loads them."""
    return load_site(SiteConfig(data_path=str(root)), config)


def write_image(path: Path, label: int, rng: np.random.Generator, mode: str) -> None:
    """A 40x40 image whose class shows as a bright square (label 1) or none."""
    pixels = rng.integers(0, 60, size=(40, 40), dtype=np.uint8)
    if label:
        pixels[10:30, 10:30] = 220
    image = Image.fromarray(pixels, mode="L")
    path.parent.mkdir(parents=True, exist_ok=True)
    (image.convert("RGB") if mode == "RGB" else image).save(path)


@pytest.fixture(autouse=True)
def _fedward_logs_reach_caplog() -> Iterator[None]:
    """Undo the CLI's logging set-up (its own handler, no propagation) after a test."""
    yield
    logger = logging.getLogger("fedward")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def write_folder(tmp_path: Path) -> WriteFolder:
    """Write ``root/<class>/img-i.png`` with ``per_class`` images per class."""

    def write(
        name: str = "site",
        classes: tuple[str, ...] = ("normal", "opacity"),
        per_class: int = 6,
        mode: str = "L",
        seed: int = 0,
    ) -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / name
        for label, cls in enumerate(classes):
            for i in range(per_class):
                write_image(root / cls / f"img-{i}.png", label, rng, mode)
        return root

    return write


@pytest.fixture
def small_config() -> FedwardConfig:
    """A config for 32 px images, fast enough for unit tests (the plain seed CNN)."""
    return FedwardConfig(
        model="seed-cnn",
        image_size=32,
        batch_size=4,
        local_epochs=1,
        val_fraction=0.2,
        test_fraction=0.2,
    )
