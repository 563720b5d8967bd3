"""A consortium on disk for the deployment tests: keys, server.toml, site files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.pacs import free_port


def _toml(keys: Mapping[str, object]) -> str:
    return "".join(
        f"{k.replace('_', '-')} = {json.dumps(v)}\n" for k, v in keys.items()
    )


def consortium(
    tmp: Path,
    hospitals: Sequence[str],
    address: str,
    *,
    server_names: Sequence[str] = (),
    **federation: object,
) -> Path:
    """``fedward certs init`` for ``hospitals``, then ``server.toml`` (returned)."""
    subprocess.run(
        [sys.executable, "-m", "fedward", "certs", "init", "--out", str(tmp / "certs"),
         *(a for h in hospitals for a in ("--hospital", h)),
         *(a for n in server_names for a in ("--server-name", n))],
        check=True, capture_output=True,
    )  # fmt: skip
    path = tmp / "server.toml"
    server = {"address": address, "certs_dir": "certs", "state_dir": "state"}
    path.write_text(_toml(server) + "[federation]\n" + _toml(federation))
    return path


def site_file(tmp: Path, name: str, **keys: object) -> Path:
    """``<name>.toml`` with a free SuperNode API port and ``keys``."""
    path = tmp / f"{name}.toml"
    path.write_text(_toml({"site_name": name, "api_port": free_port(), **keys}))
    return path
