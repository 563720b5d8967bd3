"""The federation with the server and each hospital in its own network namespace.

Each hospital reaches the server over its own veth link (10.231.<i>.0/30, addresses
of test hosts this test creates and removes), optionally with 200 ms delay and 5 %
loss (``tc netem``). Skipped, with the reason, where namespaces or netem are missing.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedward.simulation.demo import write_demo
from tests.deploy import consortium, site_file

pytestmark = pytest.mark.integration
PORT = 9092


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def netns_permitted() -> str:
    probe = f"fwprobe{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", probe)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"network namespaces are not permitted here ({exc})"
    ip("netns", "del", probe)
    return ""


def netem_available() -> str:
    probe = f"fwprobe{uuid.uuid4().hex[:6]}"
    ip("netns", "add", probe)
    try:
        result = subprocess.run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root",
             "netem", "delay", "1ms"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        ip("netns", "del", probe)
    return (
        ""
        if result.returncode == 0
        else f"no netem in this kernel ({result.stderr.strip()})"
    )


@contextlib.contextmanager
def topology(hospitals: int, netem: bool) -> Iterator[tuple[str, list[str], list[str]]]:
    """Server namespace, hospital namespaces and the server address each one uses."""
    tag = uuid.uuid4().hex[:5]
    server, sites = f"fws{tag}", [f"fwh{tag}{i}" for i in range(hospitals)]
    addresses = []
    try:
        ip("netns", "add", server)
        ip("-n", server, "link", "set", "lo", "up")
        for i, ns in enumerate(sites, start=1):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            a, b = f"vs{tag}{i}", f"vh{tag}{i}"
            ip("link", "add", a, "type", "veth", "peer", "name", b)
            ip("link", "set", a, "netns", server)
            ip("link", "set", b, "netns", ns)
            ip("-n", server, "addr", "add", f"10.231.{i}.1/30", "dev", a)
            ip("-n", ns, "addr", "add", f"10.231.{i}.2/30", "dev", b)
            ip("-n", server, "link", "set", a, "up")
            ip("-n", ns, "link", "set", b, "up")
            if netem:
                for where, dev in ((ns, b), (server, a)):
                    subprocess.run(
                        ["ip", "netns", "exec", where, "tc", "qdisc", "add", "dev", dev,
                         "root", "netem", "delay", "200ms", "loss", "5%"],
                        check=True, capture_output=True,
                    )  # fmt: skip
            addresses.append(f"10.231.{i}.1")
        yield server, sites, addresses
    finally:
        for ns in [server, *sites]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.mark.parametrize("netem", [False, True], ids=["apart", "netem-200ms-5pct"])
def test_federation_across_network_namespaces(tmp_path: Path, netem: bool) -> None:
    if reason := netns_permitted() or (netem and netem_available()):
        pytest.skip(reason)
    names = ["st-mary", "general"]
    with topology(len(names), netem) as (server_ns, site_ns, addresses):
        server_toml = consortium(
            tmp_path, names, f"0.0.0.0:{PORT}", server_names=addresses,
            num_server_rounds=2, local_epochs=1, image_size=48,
        )  # fmt: skip
        write_demo(tmp_path / "data", 2, seed=0, max_images=16)
        daemons = []
        for i, (name, ns, addr) in enumerate(
            zip(names, site_ns, addresses, strict=True)
        ):
            site = site_file(
                tmp_path, name, data_path=f"data/hospital-{i + 1}",
                superlink=f"{addr}:{PORT}", root_certificates="certs/ca.crt",
                node_key=f"certs/hospitals/{name}/node.key",
            )  # fmt: skip
            log = (tmp_path / f"{name}.log").open("wb")
            daemons.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "fedward", "hospital",
                 "--config", str(site)],
                stdout=log, stderr=log,
            ))  # fmt: skip
        try:
            server = subprocess.run(
                ["ip", "netns", "exec", server_ns, sys.executable, "-m", "fedward",
                 "server", "--config", str(server_toml),
                 "--run-dir", str(tmp_path / "run")],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
        finally:
            for proc in daemons:
                proc.terminate()
                proc.wait(timeout=60)

    assert server.returncode == 0, server.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rounds"] == 2
    assert set(summary["final"]["sites"]) == set(names)
