"""deploy/compose.yaml really runs: the server, two hospitals and Orthanc under podman.

The images are built here (tests/containers.py): a Debian base from debootstrap,
the wheelhouse, fedward's image and an Orthanc image from Debian's packages. The
compose file and site files are deploy/'s own; only the server's [federation]
is made small (one round, 64-pixel images). st-mary trains on PNG files in its
data volume, general on DICOM files it fetches from Orthanc over DICOMweb; the
round goes over TLS with node authentication, and both hospitals keep the final
model after checking its signature against the consortium CA.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedward.inference.export import Predictor
from fedward.signing import Trust
from fedward.simulation.demo import write_demo
from tests.containers import (
    DEPLOY,
    ENV,
    build_images,
    chown_tree,
    compose,
    podman,
    volume_path,
)
from tests.containers import logs as container_logs

pytestmark = [pytest.mark.integration, pytest.mark.containers]
PROJECT = f"fedward-test-{os.getpid()}"
FEDERATION = (
    "[federation]\nnum-server-rounds = 1\nlocal-epochs = 1\nimage-size = 64\n"
    'batch-size = 8\nrun-dir = "/var/lib/fedward/runs/compose"\n'
)
UPLOAD = """
import base64, pathlib, sys, urllib.request
token = base64.b64encode(b"fedward:" + sys.argv[2].encode()).decode()
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.dcm")):
    req = urllib.request.Request("http://localhost:8042/instances", path.read_bytes())
    req.add_header("Authorization", "Basic " + token)
    urllib.request.urlopen(req, timeout=30).read()
"""


def wait_until_up(container: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    script = (
        "import urllib.request as u; u.urlopen('http://localhost:8042/app/', timeout=5)"
    )
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["podman", "exec", container, "python3", "-c", script],
            env=ENV,
            capture_output=True, check=False,
        )  # fmt: skip
        if probe.returncode == 0 or b"401" in probe.stderr:
            return
        time.sleep(1)
    raise RuntimeError(f"{container} did not answer on 8042")


def prepare(tmp: Path) -> Path:
    """deploy/compose.yaml and its files in ``tmp``, keys made, volumes filled."""
    folder = tmp / "deploy"
    shutil.copytree(DEPLOY / "compose", folder / "compose")
    shutil.copy(DEPLOY / "compose.yaml", folder / "compose.yaml")
    server = (folder / "compose" / "server.toml").read_text()
    server = server[: server.index("[federation]")] + FEDERATION
    (folder / "compose" / "server.toml").write_text(server)
    subprocess.run(
        [sys.executable, "-m", "fedward", "certs", "init", "--out",
         str(folder / "certs"), "--server-name", "server",
         "--hospital", "st-mary", "--hospital", "general"],
        check=True, capture_output=True,
    )  # fmt: skip
    chown_tree(folder / "certs")
    write_demo(tmp / "png", 1, seed=0, max_images=24)
    write_demo(tmp / "dcm", 1, seed=1, max_images=24, fmt="dicom")
    data = volume_path(f"{PROJECT}_st-mary-data")
    shutil.copytree(tmp / "png" / "hospital-1", data, dirs_exist_ok=True)
    state = volume_path(f"{PROJECT}_general-state")
    shutil.copy(tmp / "dcm" / "hospital-1" / "labels.csv", state / "labels.csv")
    chown_tree(data)
    chown_tree(state)
    return folder


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("compose")
    build_seconds = build_images()
    folder = prepare(tmp)
    started = time.monotonic()
    try:
        compose(PROJECT, folder, "up", "-d", "orthanc")
        orthanc = f"{PROJECT}_orthanc_1"
        wait_until_up(orthanc)
        podman("cp", str(tmp / "dcm" / "hospital-1"), f"{orthanc}:/tmp/dicom")
        password = (DEPLOY / "compose" / "pacs-password").read_text().strip()
        podman("exec", orthanc, "python3", "-c", UPLOAD, "/tmp/dicom", password)
        compose(PROJECT, folder, "up", "-d")
        code = podman("wait", f"{PROJECT}_server_1", timeout=900).strip()
        logs = {
            name: container_logs(f"{PROJECT}_{name}_1")
            for name in ("server", "st-mary", "general")
        }
        run = volume_path(f"{PROJECT}_server-state") / "runs" / "compose"
        yield {
            "code": code,
            "logs": logs,
            "run": run,
            "general-state": volume_path(f"{PROJECT}_general-state"),
            "ca": folder / "certs" / "ca.crt",
            "seconds": time.monotonic() - started,
            "build-seconds": build_seconds,
        }
    finally:
        subprocess.run(
            [sys.executable, "-m", "podman_compose", "-p", PROJECT, "-f",
             str(folder / "compose.yaml"), "down", "-v", "-t", "20"],
            capture_output=True, check=False, timeout=300,
            env=ENV,
        )  # fmt: skip


def test_the_compose_federation_completes_a_tls_round(
    consortium: dict[str, Any],
) -> None:
    logs = consortium["logs"]
    run = consortium["run"]

    assert consortium["code"] == "0", logs["server"][-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 1
    assert set(summary["final"]["sites"]) == {"st-mary", "general"}
    assert summary["final"]["global"]["num-examples"] == sum(
        s["num-examples"] for s in summary["final"]["sites"].values()
    )
    assert "registered hospital key" in logs["server"]  # TLS + node authentication
    print(  # the figures the docs quote
        f"\ncompose round: {consortium['seconds']:.0f}s; builds (s): "
        f"{consortium['build-seconds']}"
    )


def test_both_hospitals_kept_the_signed_final_model(
    consortium: dict[str, Any],
) -> None:
    run = consortium["run"]

    record = json.loads((run / "final-model.json").read_text())
    assert record["accepted"] == ["general", "st-mary"]
    assert record["refused"] == {}
    kept = sorted((consortium["general-state"] / "models").iterdir())
    assert len(kept) == 1
    predictor = Predictor(kept[0], Trust.from_ca_file(consortium["ca"]))
    assert predictor.card.server_round == 1
    assert "kept the final model" in consortium["logs"]["general"]
