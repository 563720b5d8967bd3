"""DICOM decoding speed: plain pydicom vs fedward, first load vs cached load.

Usage: ``python -m benchmarks.dicom``. Writes ``benchmarks/results/dicom.{json,md}``.

Both sides do the same work per file: read it, decode the pixels, apply the
modality LUT and the window, scale to uint8 and resize to the model's size and
channels (the script checks that they give the same pixels). The plain side does
it the fastest way pydicom, numpy and Pillow allow, for these files only; fedward
also sniffs content, applies its header rules, hashes for the cache key, writes
the cache and splits the site. Each figure is the best of five rounds, the
rounds interleaved so that a busy machine slows both sides alike; images per
CPU second (all threads of the process) are printed beside images per second, as
they vary less on a shared machine.
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


Rates = tuple[float, float]  # images per wall second, images per CPU second


def now() -> Rates:
    return time.perf_counter(), time.process_time()


def rates(n: int, start: Rates) -> Rates:
    """``n`` images since ``start``, per wall second and per CPU second."""
    wall, cpu = now()
    return n / (wall - start[0]), n / max(cpu - start[1], 1e-9)


def timed_plain(files: list[Path], size: int) -> Rates:
    start = now()
    for path in files:
        plain_image(path, size)
    return rates(len(files), start)


def timed_loads(site_dir: Path, state: Path, run: FedwardConfig) -> list[Rates]:
    """A first load (empty cache), then a second load (from the cache)."""
    site = site_for_folder(site_dir).replace(cache_dir=str(state))
    measured = []
    for _ in range(2):
        start = now()
        measured.append(rates(load_site(site, run).total(), start))
    shutil.rmtree(state)
    return measured


def best(runs: list[Rates]) -> Rates:
    return max(r[0] for r in runs), max(r[1] for r in runs)


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
    runs: dict[str, list[Rates]] = {"plain": [], "first": [], "cached": []}
    for _ in range(ROUNDS):
        runs["plain"].append(timed_plain(files, run.image_size))
        first, cached = timed_loads(site_dir, work / "state", run)
        runs["first"].append(first)
        runs["cached"].append(cached)
    shutil.rmtree(work)
    plain, first, cached = (best(runs[k]) for k in ("plain", "first", "cached"))
    results = {
        "files": len(files),
        "rounds": ROUNDS,
        "images-per-wall-second": {
            "plain-pydicom": plain[0],
            "first load (decode)": first[0],
            "second load (cache)": cached[0],
        },
        "images-per-cpu-second": {
            "plain-pydicom": plain[1],
            "first load (decode)": first[1],
            "second load (cache)": cached[1],
        },
    }
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "dicom.json").write_text(json.dumps(results, indent=2) + "\n")

    def row(name: str, r: Rates) -> str:
        return (
            f"| {name} | {r[0]:.0f} | {r[0] / plain[0]:.2f}x "
            f"| {r[1]:.0f} | {r[1] / plain[1]:.2f}x |"
        )

    table = "\n".join(
        [
            f"| DICOM, {len(files)} CR files + labels CSV, 224 px -> "
            f"{run.image_size} px, best of {ROUNDS} | images/s | vs plain "
            "| images/CPU-s | vs plain |",
            "|---|---:|---:|---:|---:|",
            row("plain pydicom (read, pixels, rescale, window, uint8, resize)", plain),
            row("fedward, first load (labels, decode, cache write, split)", first),
            row("fedward, later loads (from the site cache)", cached),
        ]
    )
    (out / "dicom.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
