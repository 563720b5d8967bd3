"""The README's test command stops at the first failing gate."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("python3", "ruff", "mypy", "lint-imports", "Orthanc", "chromium", "podman",
         "runc", "debootstrap", "apt-get")  # fmt: skip


@pytest.mark.parametrize("failing", ["ruff", "mypy", "lint-imports"])
def test_a_failing_gate_fails_the_test_script(tmp_path: Path, failing: str) -> None:
    """Each tool is a stub that logs its call; ``failing`` exits 1."""
    log = tmp_path / "calls"
    for tool in TOOLS:
        stub = tmp_path / tool
        code = 1 if tool == failing else 0
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit {code}\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin"}

    run = subprocess.run(
        ["bash", str(ROOT / "scripts" / "test")], env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip

    calls = log.read_text().splitlines()
    assert run.returncode != 0
    assert any(call.startswith(failing) for call in calls)
    assert not any("-m pytest" in call for call in calls)  # stopped before pytest
