import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from fedward.simulation.demo import CLASSES, ensure_demo, hospital_profiles, write_demo


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_demo_is_deterministic_by_seed(tmp_path: Path) -> None:
    write_demo(tmp_path / "a", 2, seed=3, max_images=12)
    write_demo(tmp_path / "b", 2, seed=3, max_images=12)
    write_demo(tmp_path / "c", 2, seed=4, max_images=12)

    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_demo_sites_differ_in_size_prevalence_and_scanner(tmp_path: Path) -> None:
    profiles = write_demo(tmp_path, 3, seed=0, max_images=40)

    sizes = {p.resolution for p in profiles}
    assert len(sizes) == 3
    means = []
    for p in profiles:
        counts = [len(list((tmp_path / p.name / c).glob("*.png"))) for c in CLASSES]
        assert sum(counts) == 40
        assert min(counts) > 0
        pixels = [
            np.asarray(Image.open(f))
            for f in sorted((tmp_path / p.name / "normal").glob("*.png"))
        ]
        means.append(float(np.mean([px.mean() for px in pixels])))
        assert pixels[0].shape == (p.resolution, p.resolution)
    assert max(means) - min(means) > 5  # scanner intensity differs
    meta = json.loads((tmp_path / "demo.json").read_text())
    assert meta["synthetic"] is True


def test_more_hospitals_than_the_fixed_three_get_seeded_profiles() -> None:
    profiles = hospital_profiles(6, seed=1)

    assert [p.name for p in profiles][-1] == "hospital-6"
    assert len({p.gamma for p in profiles}) == 6


def test_ensure_demo_writes_once(tmp_path: Path) -> None:
    assert ensure_demo(tmp_path / "d", 2, 0) is True
    assert ensure_demo(tmp_path / "d", 2, 0) is False
