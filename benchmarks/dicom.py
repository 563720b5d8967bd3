"""DICOM decoding speed: plain pydicom vs fedward, first load vs cached load.

Usage: ``python -m benchmarks.dicom``. Writes ``benchmarks/results/dicom.{json,md}``.

Both sides do the same work per file: read it, decode the pixels, apply the
modality LUT and the window, scale to uint8 and resize to the model's size and
channels (the script checks that they give the same pixels). The plain side does
it the fastest way pydicom, numpy and Pillow allow, for these files only; fedward
also sniffs content, applies its header rules, hashes for the cache key, writes
the cache and splits the site. Each figure is the best of five rounds, the
rounds interleaved so that a busy machine slows both sides alike.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from PIL import Image

from fedward.config import FedwardConfig
from fedward.data.decode import Preprocess, decode_file
from fedward.data.load import load_site, site_for_folder
from fedward.simulation.demo import write_demo

ROUNDS = 5


def plain_image(path: Path, size: int) -> np.ndarray:
    """dcmread, pixel_array, rescale and window in float32, uint8, resize, RGB."""
    ds = pydicom.dcmread(path)
    values = ds.pixel_array.astype(np.float32)
    values *= np.float32(ds.get("RescaleSlope", 1))
    values += np.float32(ds.get("RescaleIntercept", 0))
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    values -= np.float32(center - 0.5)
    values /= np.float32(width - 1)
    values += np.float32(0.5)
    np.clip(values, 0.0, 1.0, out=values)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        np.subtract(np.float32(1.0), values, out=values)
    values *= 255.0
    grey = Image.fromarray(np.rint(values, out=values).astype(np.uint8))
    small = np.asarray(grey.resize((size, size), Image.Resampling.BILINEAR))
    return np.repeat(small[None], 3, axis=0)


def timed_plain(files: list[Path], size: int) -> float:
    start = time.perf_counter()
    for path in files:
        plain_image(path, size)
    return len(files) / (time.perf_counter() - start)


def timed_loads(site_dir: Path, state: Path, run: FedwardConfig) -> tuple[float, float]:
    """Images/s of a first load (empty cache) and a second load (from the cache)."""
    site = site_for_folder(site_dir).replace(cache_dir=str(state))
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        n = load_site(site, run).total()
        rates.append(n / (time.perf_counter() - start))
    shutil.rmtree(state)
    return rates[0], rates[1]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="fedward-dicom-bench-"))
    write_demo(work / "demo", 1, seed=0, fmt="dicom")  # 320 CR images, 224 px
    site_dir = work / "demo" / "hospital-1"  # with labels.csv: the dicom source
    files = sorted(site_dir.rglob("*.dcm"))
    run = FedwardConfig()
    pre = Preprocess(run.in_channels, run.image_size)
    for path in files[:8]:  # like for like: the same pixels on both sides
        if not torch.equal(
            torch.from_numpy(plain_image(path, run.image_size)), decode_file(path, pre)
        ):
            raise RuntimeError(f"plain and fedward pixels differ for {path.name}")
    best = {"plain": 0.0, "first": 0.0, "cached": 0.0}
    for _ in range(ROUNDS):
        best["plain"] = max(best["plain"], timed_plain(files, run.image_size))
        first, cached = timed_loads(site_dir, work / "state", run)
        best["first"], best["cached"] = (
            max(best["first"], first),
            max(best["cached"], cached),
        )
    shutil.rmtree(work)
    plain, first, cached = best["plain"], best["first"], best["cached"]
    results = {
        "files": len(files),
        "plain-pydicom": plain,
        "first load (decode)": first,
        "second load (cache)": cached,
    }
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "dicom.json").write_text(json.dumps(results, indent=2) + "\n")
    table = "\n".join(
        [
            f"| DICOM images/s ({len(files)} CR files + labels CSV, 224 px -> "
            f"{run.image_size} px, best of {ROUNDS}) | images/s | vs plain |",
            "|---|---:|---:|",
            f"| plain pydicom (read, pixels, rescale, window, uint8, resize) "
            f"| {plain:.0f} | 1.00x |",
            f"| fedward, first load (labels, decode, cache write, split) "
            f"| {first:.0f} | {first / plain:.2f}x |",
            f"| fedward, later loads (from the site cache) | {cached:.0f} "
            f"| {cached / plain:.2f}x |",
        ]
    )
    (out / "dicom.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
