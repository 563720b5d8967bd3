"""A hospital killed mid-federation: the round ends without it; it rejoins later."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedward.simulation.demo import write_demo
from tests.deploy import consortium, site_file
from tests.pacs import free_port

pytestmark = pytest.mark.integration
HOSPITALS = ("h1", "h2", "h3")


def daemon(site: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "fedward", "hospital", "--config", str(site)],
        stdout=out, stderr=out, start_new_session=True,  # killable as a group
    )  # fmt: skip


def rows(run: Path) -> list[dict[str, object]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def wait_for(run: Path, scope: str, server_round: int, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["scope"] == scope and r["round"] == server_round for r in rows(run)):
            return
        time.sleep(0.5)
    raise AssertionError(f"no {scope} row for round {server_round}")


def test_a_killed_hospital_is_left_out_then_rejoins(tmp_path: Path) -> None:
    port = free_port()
    server_toml = consortium(
        tmp_path, HOSPITALS, f"127.0.0.1:{port}",
        num_server_rounds=4, local_epochs=1, image_size=64, round_timeout=45.0,
    )  # fmt: skip
    write_demo(tmp_path / "data", 3, seed=0, max_images=24)
    sites = {
        name: site_file(
            tmp_path,
            name,
            data_path=f"data/hospital-{i}",
            superlink=f"127.0.0.1:{port}",
            root_certificates="certs/ca.crt",
            node_key=f"certs/hospitals/{name}/node.key",
        )
        for i, name in enumerate(HOSPITALS, start=1)
    }
    daemons = {n: daemon(sites[n], tmp_path / f"{n}.log") for n in HOSPITALS}
    run = tmp_path / "run"
    server = subprocess.Popen(
        [sys.executable, "-m", "fedward", "server",
         "--config", str(server_toml), "--run-dir", str(run)],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "server.log").open("wb"),
    )  # fmt: skip
    try:
        wait_for(run, "global", 1)
        os.killpg(daemons["h3"].pid, signal.SIGKILL)  # the daemon and its SuperNode
        wait_for(run, "train", 2)
        daemons["h3"] = daemon(sites["h3"], tmp_path / "h3.log")
        assert server.wait(timeout=600) == 0, (tmp_path / "server.log").read_text()[
            -3000:
        ]
    finally:
        if server.poll() is None:
            server.terminate()
        for proc in daemons.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)

    trained = {
        r: {x["site"] for x in rows(run) if x["scope"] == "train" and x["round"] == r}
        for r in (1, 2, 3, 4)
    }
    assert trained[1] == {"h1", "h2", "h3"}
    assert trained[2] == {"h1", "h2"}  # the round finished with the others
    assert "h3" in trained[4]  # and the restarted hospital came back
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 4
