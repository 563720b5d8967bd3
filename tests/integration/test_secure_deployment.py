"""A secure round over TLS: three hospital daemons, one killed after its masked input.

Every process is the one users run (``fedward certs``, ``fedward server``,
``fedward hospital``). The killed hospital's input is still in the sum: the
other two reveal the shares of its self-mask seed; the server keeps only names
and participation, and each hospital keeps its own figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fedward.metrics.counts import EvalCounts, pool
from fedward.simulation.demo import write_demo
from tests.deploy import consortium, site_file
from tests.pacs import free_port

pytestmark = pytest.mark.integration
HOSPITALS = ("h1", "h2", "h3")


def daemon(site: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    env = {**os.environ, "FLWR_LOG_LEVEL": "INFO"}  # Flower's "Sent successfully"
    return subprocess.Popen(
        [sys.executable, "-m", "fedward", "hospital", "--config", str(site)],
        stdout=out, stderr=out, start_new_session=True, env=env,
    )  # fmt: skip


def sent_masked_input(log: Path) -> bool:
    text = log.read_text(errors="replace") if log.is_file() else ""
    at = text.find("Sending: train message")
    return at >= 0 and "Sent successfully" in text[at:]


def rows(run: Path) -> list[dict[str, object]]:
    path = run / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_a_secure_round_over_tls_survives_a_hospital_killed_after_its_input(
    tmp_path: Path,
) -> None:
    port = free_port()
    # round 1 trains only once all three are connected; evaluation needs two (after
    # the kill Flower would otherwise wait for a third hospital for ever)
    server_toml = consortium(
        tmp_path, HOSPITALS, f"127.0.0.1:{port}", num_server_rounds=1,
        local_epochs=1, image_size=32, round_timeout=60.0, min_train_nodes=3,
        secure_aggregation=True,
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
            require_secure_aggregation=True,
        )
        for i, name in enumerate(HOSPITALS, start=1)
    }
    logs = {n: tmp_path / f"{n}.log" for n in HOSPITALS}
    daemons = {n: daemon(sites[n], logs[n]) for n in HOSPITALS}
    run = tmp_path / "run"
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "fedward", "server",
         "--config", str(server_toml), "--run-dir", str(run)],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "server.log").open("wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 400
        while not sent_masked_input(logs["h3"]):
            assert time.monotonic() < deadline, "h3 never sent its masked input"
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.1)
        os.killpg(daemons["h3"].pid, signal.SIGKILL)  # the daemon and its SuperNode
        code = server.wait(timeout=600)
    finally:
        if server.poll() is None:
            server.terminate()
        for proc in daemons.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    print(f"secure deployment round: {time.monotonic() - started:.0f} s")

    assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    records = rows(run)
    (train,) = [r for r in records if r["scope"] == "secure-train"]
    assert train["outcome"] == "aggregated"
    assert train["in-sum"] == 3  # h3's input is in the sum ...
    assert train["recovered-after-dropping"] == 1  # ... recovered without h3
    took_part = {
        (r["stage"], r["site"]): r["took-part"]
        for r in records
        if r["scope"] == "participation"
    }
    assert all(took_part[("train", h)] for h in HOSPITALS)
    (evaluation,) = [r for r in records if r["scope"] == "secure-evaluate"]
    assert evaluation["outcome"] == "aggregated"
    assert evaluation["in-sum"] == 2
    # the server holds no per-hospital figure; the hospitals hold their own
    assert {r["scope"] for r in records} == {
        "participation", "secure-train", "secure-evaluate", "global",
    }  # fmt: skip
    check = json.loads((run / "data-check.json").read_text())
    assert "secure aggregation" in check["skipped"]
    kept = {
        h: [json.loads(x) for f in (tmp_path / f"{h}-figures").glob("run-*.jsonl")
            for x in f.read_text().splitlines()]
        for h in ("h1", "h2")
    }  # fmt: skip
    assert "kept at this hospital, not sent" in logs["h1"].read_text()
    local = pool(
        EvalCounts.from_json(r["counts"])
        for rows_ in kept.values()
        for r in rows_
        if r["stage"] == "evaluate"
    )
    curves = [json.loads(x) for x in (run / "curves.jsonl").read_text().splitlines()]
    (pooled,) = curves
    unmasked = EvalCounts.from_json(pooled)
    assert unmasked.num_examples == local.num_examples
    np.testing.assert_array_equal(unmasked.confusion, local.confusion)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["sites"] == {}
    assert summary["secure-aggregation"]["took-part"]["h3"]["train"] == [1]
