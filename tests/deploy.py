"""A consortium on disk for the deployment tests: keys, server.toml, site files."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fedward.deployment.approvals import record_approval
from fedward.deployment.bundle import AppSummary, app_dir, build_app
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


@functools.cache
def this_app() -> AppSummary:
    """The app bundle ``fedward server`` ships from this checkout."""
    return AppSummary.from_fab(build_app())


def other_app(tmp: Path) -> Path:
    """A bundle of other code: this checkout with a line added to the ClientApp."""
    project = tmp / "other-app"
    shutil.copytree(app_dir() / "fedward", project / "fedward",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(app_dir() / "pyproject.toml", project / "pyproject.toml")
    with (project / "fedward" / "fl" / "client_app.py").open("a") as f:
        f.write("# not what the hospital approved\n")
    fab = tmp / "other-app.fab"
    fab.write_bytes(build_app(project))
    return fab


def site_file(tmp: Path, name: str, *, approve: bool = True, **keys: object) -> Path:
    """``<name>.toml`` with a free SuperNode API port and ``keys``.

    With ``approve``, this checkout's app is approved in the site's (default)
    approvals file, ``<name>-approved-apps.json`` beside it.
    """
    path = tmp / f"{name}.toml"
    path.write_text(_toml({"site_name": name, "api_port": free_port(), **keys}))
    if approve:
        record_approval(tmp / f"{name}-approved-apps.json", this_app())
    return path
