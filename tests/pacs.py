"""A real Orthanc PACS with its DICOMweb plugin, started for a test and stopped after.

Orthanc 1.10 has no option to choose the address it listens on, so the PACS tests
run inside a fresh network namespace (``unshare --net``) whose only interface is
the loopback: there, Orthanc is reachable on 127.0.0.1 and nowhere else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "hospital", "s3cret-pacs"
PLUGIN_GLOBS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so*",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
)


def ensure_orthanc() -> str:
    """The Orthanc binary, installed from Debian's packages when missing."""
    binary = shutil.which("Orthanc")
    if binary is None:
        env = {
            "DEBIAN_FRONTEND": "noninteractive",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "orthanc", "orthanc-dicomweb"],
            check=True,
            env=env,
        )
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not _plugin():
        raise RuntimeError("orthanc-dicomweb is not installed")
    return binary


def _plugin() -> str:
    for pattern in PLUGIN_GLOBS:
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return str(found[0])
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: its URLs and credentials."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def request(self, path: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(f"{self.url}{path}", data=data)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        if data is not None:
            req.add_header("Content-Type", "application/dicom")
        with urllib.request.urlopen(req, timeout=30) as response:
            body: bytes = response.read()
            return body

    def upload(self, files: list[Path]) -> None:
        for path in files:
            self.request("/instances", path.read_bytes())


@contextlib.contextmanager
def running_orthanc(workdir: Path) -> Iterator[Orthanc]:
    """Start Orthanc with authentication and a temporary storage folder."""
    binary = ensure_orthanc()
    port = free_port()
    config = {
        "Name": "fedward-test-pacs",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": "127.0.0.1"},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "orthanc.json").write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("wb")
    process = subprocess.Popen(
        [binary, str(workdir / "orthanc.json")], stdout=log, stderr=log
    )
    server = Orthanc(port, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.request("/system")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "Orthanc did not start: "
                        + (workdir / "orthanc.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
