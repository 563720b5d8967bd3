"""A simulation server killed with SIGKILL mid-round resumes to the same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from fedward.runfolder import RunFolder
from fedward.simulation.demo import write_demo

pytestmark = pytest.mark.integration


def simulate(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedward", "simulate", *args]


def settings(data: Path, run_dir: Path) -> list[str]:
    return [
        "--data", str(data), "--run-dir", str(run_dir), "--rounds", "3",
        "--local-epochs", "1", "--set", "image-size=32",
    ]  # fmt: skip


def finished(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=1200, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def global_rows(run_dir: Path) -> list[dict[str, object]]:
    rows = RunFolder(run_dir).read_jsonl(RunFolder.METRICS)
    return [r for r in rows if r["scope"] in ("global", "site", "train")]


def kill_mid_round_two(command: list[str], cwd: Path, run_dir: Path) -> None:
    """Start the run; SIGKILL the server once round 2 has trained, not finished."""
    proc = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    tree = psutil.Process(proc.pid)
    metrics = run_dir / RunFolder.METRICS
    deadline = time.monotonic() + 1200
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            text = metrics.read_text() if metrics.is_file() else ""
            if '"round": 2, "scope": "train"' in text:
                children = tree.children(recursive=True)
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        else:
            pytest.fail("round 2 never started training")
        proc.wait(timeout=30)
        # Ray's processes share the server's fate (they die with it); make sure
        for child in children:
            if child.is_running():
                child.kill()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_killed_server_resumes_to_the_same_final_weights(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_demo(data, 2, seed=0, max_images=30)
    killed = tmp_path / "killed"
    kill_mid_round_two(simulate(*settings(data, killed)), tmp_path, killed)
    assert not (killed / RunFolder.SUMMARY).exists()
    assert not (RunFolder(killed).resume_point(2) / RunFolder.MANIFEST).exists()
    assert (RunFolder(killed).resume_point(1) / RunFolder.MANIFEST).is_file()

    resumed = finished(simulate("--resume", str(killed)), tmp_path)
    whole = tmp_path / "whole"
    finished(simulate(*settings(data, whole)), tmp_path)

    assert "resuming after round 1 of 3" in resumed.stderr
    # the weights after the last round (its resume point), and the round
    # exported (export-round = best), are the same
    last = [
        RunFolder(r).resume_point(3) / RunFolder.CHECKPOINT for r in (whole, killed)
    ]
    exported = [r / RunFolder.CHECKPOINT for r in (whole, killed)]
    for a_path, b_path in (last, exported):
        a = torch.load(a_path, weights_only=True)
        b = torch.load(b_path, weights_only=True)
        assert a["round"] == b["round"]
        for key, values in a["state_dict"].items():
            assert torch.allclose(values, b["state_dict"][key], rtol=0, atol=1e-6), key
    assert torch.load(last[1], weights_only=True)["round"] == 3
    assert global_rows(whole) == global_rows(killed)
    summary = json.loads((killed / RunFolder.SUMMARY).read_text())
    whole_summary = json.loads((whole / RunFolder.SUMMARY).read_text())
    assert summary["rounds"] == 3
    assert summary["exported-round"] == whole_summary["exported-round"]
    assert (killed / "export" / "model.onnx").is_file()
