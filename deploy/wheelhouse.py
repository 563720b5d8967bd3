"""A wheelhouse: every third-party wheel fedward needs, for installs with no index.

    python deploy/wheelhouse.py [--out build/wheelhouse]

Pins exactly the versions installed in this Python environment (those the tests
ran with): fedward's requirements are walked through the installed packages'
metadata, extras included (``flwr[simulation]``), plus the build backend an
editable install of fedward needs (setuptools). The pins go to
``OUT/requirements.txt`` and each is fetched as a wheel with ``pip wheel
--no-deps``, through pip's own configuration (its index, local wheel folders).

Install from it where no index is reachable (an air-gapped hospital, a container
build)::

    pip install --no-index --find-links OUT --no-deps -r OUT/requirements.txt
    pip install --no-index --no-deps --no-build-isolation -e .

torch 2.14.1 from PyPI is a CUDA build: its ``nvidia-*`` and ``cuda-*``
requirements (about 2.7 GB of wheels) are in the wheelhouse too, since torch does
not import without them (``libtorch_python`` links the CUDA libraries), even on a
machine without a GPU. A CPU-only torch of the pinned version would shrink the
image by that much; none is available offline here.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

BUILD_BACKEND = ("setuptools",)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_closure(
    root: str = "fedward", extras: tuple[str, ...] = ()
) -> dict[str, str]:
    """Every installed distribution ``root`` needs, by canonical name -> version."""
    pins: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        dist = metadata.distribution(name)
        if name != root:
            pins[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker and not any(req.marker.evaluate(e) for e in environments):
                continue
            todo.append((_canonical(req.name), frozenset(req.extras)))
    return pins


def missing_wheels(out: Path, pins: dict[str, str]) -> dict[str, str]:
    """The pins that have no wheel in ``out`` yet (a wheel's name: name-version-...)."""
    present = set()
    for wheel in out.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        present.add((_canonical(name), version))
    return {n: v for n, v in pins.items() if (n, v) not in present}


def main() -> int:
    """Write the requirements file and fetch the wheels."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/wheelhouse"))
    args = parser.parse_args()
    pins = pinned_closure()
    pins.update({name: metadata.version(name) for name in BUILD_BACKEND})
    args.out.mkdir(parents=True, exist_ok=True)
    requirements = args.out / "requirements.txt"
    requirements.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    missing = missing_wheels(args.out, pins)
    print(f"{len(pins)} pinned packages in {requirements}, {len(missing)} to fetch")
    if not missing:
        return 0
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
               "--wheel-dir", str(args.out),
               *(f"{n}=={v}" for n, v in sorted(missing.items()))]  # fmt: skip
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
