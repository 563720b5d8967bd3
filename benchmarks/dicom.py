"""DICOM decoding speed: plain pydicom vs fedward, first load vs cached load.

Usage: ``python -m benchmarks.dicom``. Writes ``benchmarks/results/dicom.{json,md}``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.load import load_site
from fedward.simulation.demo import write_demo


def plain_decode(files: list[Path], size: int) -> int:
    """The textbook way: dcmread, pixel_array, min-max to uint8, resize."""
    for path in files:
        pixels = pydicom.dcmread(path).pixel_array.astype(np.float32)
        pixels = (pixels - pixels.min()) / max(float(np.ptp(pixels)), 1.0) * 255
        Image.fromarray(pixels.astype(np.uint8)).resize((size, size))
    return len(files)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="fedward-dicom-bench-"))
    write_demo(work / "demo", 1, seed=0, fmt="dicom")  # 320 CR images, 224 px
    site_dir = work / "demo" / "hospital-1"
    files = sorted(site_dir.rglob("*.dcm"))
    run = FedwardConfig()
    site = SiteConfig(data_path=str(site_dir), cache_dir=str(work / "state"))

    start = time.perf_counter()
    plain = plain_decode(files, run.image_size) / (time.perf_counter() - start)
    rates = {}
    for name in ("first load (decode)", "second load (cache)"):
        start = time.perf_counter()
        n = load_site(site, run).total()
        rates[name] = n / (time.perf_counter() - start)
    shutil.rmtree(work)
    first, cached = rates["first load (decode)"], rates["second load (cache)"]
    results = {"files": len(files), "plain-pydicom": plain, **rates}
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "dicom.json").write_text(json.dumps(results, indent=2) + "\n")
    table = "\n".join(
        [
            "| DICOM images/s (320 CR files, 224 px -> 150 px) | images/s | vs plain |",
            "|---|---:|---:|",
            f"| plain pydicom (dcmread, pixel_array, resize) | {plain:.0f} | 1.00x |",
            f"| fedward, first load (decode, LUTs, cache write) | {first:.0f} "
            f"| {first / plain:.2f}x |",
            f"| fedward, later loads (from the site cache) | {cached:.0f} "
            f"| {cached / plain:.2f}x |",
        ]
    )
    (out / "dicom.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
