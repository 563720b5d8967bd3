"""Synthetic chest-X-ray-like demo data: ``normal`` vs ``opacity``, per hospital.

Not real patient data. Each image is a drawn thorax (body, lungs, heart, ribs,
soft lung texture); ``opacity`` images add one to three faint blurred patches in
a lung. Hospitals differ as real sites do: image count, class prevalence, detector
resolution, intensity curve (gamma), contrast, blur and noise.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from fedward.errors import DataError

CLASSES = ("normal", "opacity")
DEMO_FILE = "demo.json"
FORMATS = ("png", "dicom")


@dataclass(frozen=True)
class ScannerProfile:
    """How one hospital's data differ from the others'."""

    name: str
    num_images: int
    prevalence: float
    resolution: int
    gamma: float
    contrast: float
    offset: float
    noise: float
    blur: float


_BASE = (
    ScannerProfile("hospital-1", 320, 0.50, 224, 1.00, 1.00, 0.00, 0.030, 0.0),
    ScannerProfile("hospital-2", 200, 0.35, 180, 0.85, 0.90, 0.04, 0.050, 0.6),
    ScannerProfile("hospital-3", 72, 0.60, 128, 1.30, 1.15, -0.04, 0.070, 1.0),
)


def hospital_profiles(num_hospitals: int, seed: int = 0) -> list[ScannerProfile]:
    """Profiles for ``num_hospitals`` sites: three fixed ones, then seeded variants."""
    rng = np.random.default_rng(seed + 7919)
    profiles = list(_BASE[:num_hospitals])
    for i in range(len(profiles), num_hospitals):
        base = _BASE[i % len(_BASE)]
        profiles.append(
            ScannerProfile(
                f"hospital-{i + 1}",
                int(rng.integers(60, 320)),
                float(rng.uniform(0.3, 0.65)),
                int(rng.choice([128, 160, 192, 224, 256])),
                float(base.gamma * rng.uniform(0.85, 1.15)),
                float(base.contrast * rng.uniform(0.9, 1.1)),
                float(rng.uniform(-0.05, 0.06)),
                float(rng.uniform(0.02, 0.08)),
                float(rng.uniform(0.0, 1.2)),
            )
        )
    return profiles


def _ellipse(
    x: np.ndarray,
    y: np.ndarray,
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    edge: float,
) -> np.ndarray:
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return np.clip((1.0 - r) / edge, 0.0, 1.0)


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return np.asarray(img, dtype=np.float32)


def render_image(
    rng: np.random.Generator, profile: ScannerProfile, opacity: bool
) -> np.ndarray:
    """One uint8 grayscale image at the profile's resolution."""
    s = profile.resolution
    y, x = np.mgrid[-1.0 : 1.0 : s * 1j, -1.0 : 1.0 : s * 1j]
    j = rng.uniform(-0.05, 0.05, size=6)
    body = _ellipse(x, y, j[0], 0.05, 0.88 + j[1], 1.0, 0.15)
    left = _ellipse(x, y, -0.38 + j[2], -0.05, 0.27 + j[3], 0.55 + j[4], 0.25)
    right = _ellipse(x, y, 0.38 + j[2], -0.05, 0.27 - j[3], 0.55 + j[5], 0.25)
    lungs = np.maximum(left, right)
    heart = _ellipse(x, y, 0.08 + j[0], 0.25, 0.24, 0.3, 0.4)
    phase = rng.uniform(0, 2 * np.pi)
    ribs = np.maximum(np.sin(2 * np.pi * (3.2 * y + 0.6 * x**2) + phase), 0.0) ** 6
    texture = _smooth_field(rng, s, 10)
    img = 0.06 + 0.42 * body - 0.30 * lungs + 0.2 * heart * (1 - 0.5 * lungs)
    img += 0.10 * ribs * body + 0.035 * texture * lungs
    if opacity:
        for _ in range(int(rng.integers(1, 4))):
            side = rng.choice([-0.38, 0.38])
            cx, cy = side + rng.uniform(-0.15, 0.15), rng.uniform(-0.45, 0.35)
            sigma = rng.uniform(0.08, 0.18)
            patch = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
            img += rng.uniform(0.4, 0.6) * patch * lungs
    img = np.clip(img, 0.0, 1.0) ** profile.gamma * profile.contrast + profile.offset
    pil = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8), mode="L")
    if profile.blur > 0:
        pil = pil.filter(ImageFilter.GaussianBlur(profile.blur))
    out = np.asarray(pil, dtype=np.float32) / 255.0
    out += rng.normal(0.0, profile.noise, size=out.shape).astype(np.float32)
    pixels: np.ndarray = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return pixels


def write_demo(
    out: Path,
    num_hospitals: int = 3,
    seed: int = 0,
    max_images: int | None = None,
    fmt: str = "png",
) -> list[ScannerProfile]:
    """Write ``out/<hospital>/<class>/*`` and ``out/demo.json``; deterministic.

    ``fmt`` is ``png`` or ``dicom``; DICOM files carry fake patient names, IDs,
    birth dates, accession numbers and institutions (see :mod:`demo_dicom`), and
    each hospital also gets a ``labels.csv`` keyed by SOP instance UID.
    """
    if fmt not in FORMATS:
        raise DataError(f"demo format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    profiles = hospital_profiles(num_hospitals, seed)
    if max_images is not None:
        profiles = [
            replace(p, num_images=min(p.num_images, max_images)) for p in profiles
        ]
    for index, profile in enumerate(profiles):
        rng = np.random.default_rng([seed, index])
        n_pos = round(profile.num_images * profile.prevalence)
        labels = np.array([1] * n_pos + [0] * (profile.num_images - n_pos))
        rng.shuffle(labels)
        for cls in CLASSES:
            (out / profile.name / cls).mkdir(parents=True, exist_ok=True)
        rows = []
        for i, label in enumerate(labels):
            pixels = render_image(rng, profile, bool(label))
            path = out / profile.name / CLASSES[label] / f"img-{i:04d}"
            if fmt == "png":
                Image.fromarray(pixels, mode="L").save(path.with_suffix(".png"))
            else:
                from fedward.simulation.demo_dicom import write_dicom

                uid = write_dicom(path.with_suffix(".dcm"), pixels, index, i, seed)
                rows.append(f"{uid},{CLASSES[label]}\n")
        if rows:
            labels_csv = out / profile.name / "labels.csv"
            labels_csv.write_text("sop_instance_uid,label\n" + "".join(rows))
    meta = {
        "synthetic": True,
        "format": fmt,
        "seed": seed,
        "classes": list(CLASSES),
        "hospitals": [asdict(p) for p in profiles],
    }
    (out / DEMO_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return profiles


def demo_root(num_hospitals: int, seed: int) -> Path:
    """Where the built-in demo for ``num_hospitals`` and ``seed`` is kept."""
    return Path("demo-data") / f"{num_hospitals}-hospitals-seed-{seed}"


def ensure_demo(out: Path, num_hospitals: int, seed: int) -> bool:
    """Write the demo to ``out`` unless it is already there; True if written.

    Raises
    ------
    DataError
        If ``out`` exists, is not empty and is not a fedward demo folder.
    """
    if (out / DEMO_FILE).is_file():
        return False
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not fedward demo data")
    write_demo(out, num_hospitals, seed=seed)
    return True
