"""The federation with the server and each hospital in its own network namespace.

Each hospital reaches the server over its own link (10.231.<i>.0/30, addresses of
test hosts this test creates and removes): a veth pair; a veth pair with 200 ms delay
and 5 % loss each way (``tc netem``); and, for kernels without netem (this project's
machines), the same delay and loss on a user-space link (:mod:`tests.impaired_link`,
a TUN device in each namespace). Skipped, with the reason, where namespaces or netem
are missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
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


def impaired_link(tag: str, i: int, server: str, site: str) -> subprocess.Popen[str]:
    """A user-space link with 200 ms delay and 5 % loss each way (no netem needed)."""
    a, b = f"ts{tag}{i}", f"th{tag}{i}"
    relay = subprocess.Popen(
        ["ip", "netns", "exec", site, sys.executable, "-m", "tests.impaired_link",
         "--tun", b, "--peer-netns", server, "--peer-tun", a, "--delay", "0.2",
         "--loss", "0.05", "--seed", str(i)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert relay.stdout is not None
    assert relay.stdout.readline().strip() == "ready"
    ip("-n", server, "addr", "add", f"10.231.{i}.1", "peer", f"10.231.{i}.2", "dev", a)
    ip("-n", site, "addr", "add", f"10.231.{i}.2", "peer", f"10.231.{i}.1", "dev", b)
    ip("-n", server, "link", "set", a, "up")
    ip("-n", site, "link", "set", b, "up")
    return relay


@dataclasses.dataclass
class Topology:
    server: str
    sites: list[str]
    addresses: list[str]  # the server's address on each hospital's link
    relays: list[subprocess.Popen[str]]


@contextlib.contextmanager
def topology(hospitals: int, link: str) -> Iterator[Topology]:
    """Server namespace, hospital namespaces and the links between them."""
    tag = uuid.uuid4().hex[:5]
    net = Topology(f"fws{tag}", [f"fwh{tag}{i}" for i in range(hospitals)], [], [])
    server = net.server
    try:
        ip("netns", "add", server)
        ip("-n", server, "link", "set", "lo", "up")
        for i, ns in enumerate(net.sites, start=1):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            net.addresses.append(f"10.231.{i}.1")
            if link == "user-space":
                net.relays.append(impaired_link(tag, i, server, ns))
                continue
            a, b = f"vs{tag}{i}", f"vh{tag}{i}"
            ip("link", "add", a, "type", "veth", "peer", "name", b)
            ip("link", "set", a, "netns", server)
            ip("link", "set", b, "netns", ns)
            ip("-n", server, "addr", "add", f"10.231.{i}.1/30", "dev", a)
            ip("-n", ns, "addr", "add", f"10.231.{i}.2/30", "dev", b)
            ip("-n", server, "link", "set", a, "up")
            ip("-n", ns, "link", "set", b, "up")
            if link == "netem":
                for where, dev in ((ns, b), (server, a)):
                    subprocess.run(
                        ["ip", "netns", "exec", where, "tc", "qdisc", "add", "dev", dev,
                         "root", "netem", "delay", "200ms", "loss", "5%"],
                        check=True, capture_output=True,
                    )  # fmt: skip
        yield net
    finally:
        for relay in net.relays:
            if relay.poll() is None:
                relay.terminate()
        for ns in [server, *net.sites]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.mark.parametrize(
    "link",
    ["veth", "netem", "user-space"],
    ids=["apart", "netem-200ms-5pct", "user-space-200ms-5pct"],
)
def test_federation_across_network_namespaces(tmp_path: Path, link: str) -> None:
    if reason := netns_permitted() or (link == "netem" and netem_available()):
        pytest.skip(reason)
    names = ["st-mary", "general"]
    with topology(len(names), link) as net:
        server_ns, site_ns, addresses = net.server, net.sites, net.addresses
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
            counts = []
            for relay in net.relays:
                relay.terminate()
                out, _ = relay.communicate(timeout=30)
                counts.append(json.loads(out))

    assert server.returncode == 0, server.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rounds"] == 2
    assert set(summary["final"]["sites"]) == set(names)
    for count in counts:  # the links really lost packets, and the run went on
        assert count["forwarded"] > 1000
        assert 0.02 < count["dropped"] / (count["dropped"] + count["forwarded"]) < 0.1


ECHO_SERVER = """
import socket, sys
s = socket.create_server((sys.argv[1], 5000))
print("listening", flush=True)
conn, _ = s.accept()
while data := conn.recv(65536):
    conn.sendall(data[:1])
"""
TIMED_CLIENT = """
import json, socket, sys, time
start = time.monotonic()
s = socket.create_connection((sys.argv[1], 5000), timeout=30)
connected = time.monotonic() - start
s.sendall(b"x" * 1_000_000)
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
print(json.dumps({"connect": connected, "total": time.monotonic() - start}))
"""


def test_the_user_space_link_delays_and_loses_packets() -> None:
    if reason := netns_permitted():
        pytest.skip(reason)
    with topology(1, "user-space") as net:
        server = subprocess.Popen(
            ["ip", "netns", "exec", net.server, sys.executable, "-c", ECHO_SERVER,
             net.addresses[0]],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        client = subprocess.run(
            ["ip", "netns", "exec", net.sites[0], sys.executable, "-c", TIMED_CLIENT,
             net.addresses[0]],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        server.wait(timeout=30)
        net.relays[0].terminate()
        out, _ = net.relays[0].communicate(timeout=30)

    timing, counts = json.loads(client.stdout), json.loads(out)
    assert timing["connect"] > 0.39  # SYN and SYN-ACK, 200 ms each way
    assert counts["dropped"] > 0  # 1 MB over TCP still arrives whole
    assert timing["total"] > 2.0
