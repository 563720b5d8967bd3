"""``fedward simulate`` run as a user runs it: a subprocess, one small round."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def simulate(
    data: Path, run_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One round of one local epoch on 64 px images; ``extra`` flags come last."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fedward",
            "simulate",
            "--data",
            str(data),
            "--run-dir",
            str(run_dir),
            "--rounds",
            "1",
            "--local-epochs",
            "1",
            "--set",
            "image-size=64",
            *extra,
        ],
        cwd=run_dir.parent,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
