"""Podman for the container tests: tools, the base image, the wheelhouse, the images.

Everything is made here from Debian's mirror and PyPI (through pip's own
configuration); nothing comes from an image registry. What is already there is
reused: the base image (podman's store), the wheelhouse (kept in
``~/.cache/fedward/wheelhouse``, linked into the build context's
``build/wheelhouse``; only wheels it lacks are fetched) and podman's build cache
for the image layers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BASE = "localhost/fedward-base:bookworm"
IMAGES = {"fedward": "Dockerfile", "fedward-orthanc": "orthanc.Dockerfile"}
UID = 10001  # the fedward user in deploy/Dockerfile (and runAsUser in deploy/k8s)
ENV = {**os.environ, "CONTAINERS_CONF": str(DEPLOY / "podman" / "containers.conf")}
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedward"
logger = logging.getLogger(__name__)


def ensure_podman() -> None:
    """Debian's podman, runc and debootstrap, installed when missing."""
    missing = [t for t in ("podman", "runc", "debootstrap") if not shutil.which(t)]
    if missing:
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": os.environ["PATH"]}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing], check=True, env=env
        )


def podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    """Run ``podman`` with the repository's containers.conf; return its stdout."""
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=ENV,
        timeout=timeout, check=False,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {result.stderr[-3000:]}")
    return result.stdout


def logs(container: str) -> str:
    """What a container wrote, stdout and stderr (where fedward logs) together."""
    result = subprocess.run(
        ["podman", "logs", container], capture_output=True, text=True, env=ENV,
        timeout=120, check=False,
    )  # fmt: skip
    return result.stdout + result.stderr


def compose(project: str, folder: Path, *args: str, timeout: float = 600) -> str:
    """Run ``podman-compose`` on ``folder/compose.yaml`` as project ``project``."""
    command = [sys.executable, "-m", "podman_compose", "-p", project,
               "-f", str(folder / "compose.yaml"),
               "--podman-run-args=--ulimit host", *args]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, env=ENV, timeout=timeout,
        check=False, cwd=folder,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"podman-compose {' '.join(args)}: {result.stderr[-3000:]}")
    return result.stdout


def timed(what: str, command: list[str], timeout: float) -> float:
    """Run a build step; return its wall time in seconds."""
    started = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, env=ENV, cwd=ROOT,
        timeout=timeout, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed: {result.stdout[-2000:]}{result.stderr[-3000:]}"
        )
    return time.monotonic() - started


def build_images() -> dict[str, float]:
    """The base image, the wheelhouse and both images; seconds per step."""
    ensure_podman()
    seconds = {
        "base-image": timed(
            "deploy/base-image.sh", ["sh", str(DEPLOY / "base-image.sh"), BASE], 900
        ),
        "wheelhouse": timed(
            "deploy/wheelhouse.py",
            [
                sys.executable,
                str(DEPLOY / "wheelhouse.py"),
                "--out",
                "build/wheelhouse",
            ],
            1200,
        ),
    }
    for image, dockerfile in IMAGES.items():
        seconds[image] = timed(
            f"podman build {image}",
            ["podman", "build", "--build-arg", f"BASE={BASE}",
             "-f", str(DEPLOY / dockerfile), "-t", image, str(ROOT)],
            1800,
        )  # fmt: skip
    return seconds


def volume_path(name: str) -> Path:
    """A podman volume's folder on this machine (created if missing)."""
    exists = subprocess.run(["podman", "volume", "exists", name], env=ENV, check=False)
    if exists.returncode != 0:
        podman("volume", "create", name)
    return Path(
        podman("volume", "inspect", name, "--format", "{{.Mountpoint}}").strip()
    )


def chown_tree(path: Path, uid: int = UID) -> None:
    """Give a folder to the images' fedward user (keys are read, state written)."""
    for item in [path, *path.rglob("*")]:
        os.chown(item, uid, uid)
