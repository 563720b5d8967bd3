from pathlib import Path

import numpy as np
import pytest

from fedward.config import FedwardConfig
from fedward.data.stats import compare_sites, js_divergence, site_statistics
from fedward.simulation.demo import write_demo
from tests.conftest import site_data

CLASSES = ["normal", "opacity"]


def fake_stats(counts: tuple[int, int], hist: list[float]) -> dict[str, object]:
    return {
        "images": sum(counts),
        "counts": {"train": dict(zip(CLASSES, counts, strict=True))},
        "intensity": {"histogram": hist},
    }


def test_label_skew_and_scanner_shift_are_flagged_from_aggregates() -> None:
    flat = [1 / 32] * 32
    dark = [0.5, 0.5] + [0.0] * 30
    stats = {
        "a": fake_stats((50, 50), flat),
        "b": fake_stats((48, 52), flat),
        "c": fake_stats((5, 45), dark),
    }

    result = compare_sites(stats, CLASSES)

    text = "\n".join(result["warnings"])
    assert "label skew: c's" in text
    assert "scanner shift: c's" in text
    assert "a's" not in text
    assert "b's" not in text
    assert result["pooled-class-shares"]["normal"] == pytest.approx(103 / 250)


def test_js_divergence_bounds() -> None:
    p = np.array([1.0, 0.0]) + 1e-12
    q = np.array([0.0, 1.0]) + 1e-12

    assert js_divergence(p, p) == pytest.approx(0.0)
    assert js_divergence(p, q) == pytest.approx(1.0, abs=1e-6)


def test_site_statistics_of_the_dicom_demo(tmp_path: Path) -> None:
    write_demo(tmp_path, 1, seed=0, max_images=12, fmt="dicom")
    config = FedwardConfig(image_size=32)

    stats = site_statistics(site_data(tmp_path / "hospital-1", config), config.classes)

    assert stats["images"] == 12
    assert stats["headers"]["Modality"] == {"CR": 12}
    assert stats["headers"]["BitsStored"] == {"12": 12}
    assert "SeriesDescription" not in stats["headers"]
    assert sum(stats["intensity"]["histogram"]) == pytest.approx(1.0)
    assert not any("FAKE" in str(v) for v in stats.values())
