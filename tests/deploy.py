"""A consortium on disk for the deployment tests: keys, server.toml, site files."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fedward.deployment.approvals import record_approval
from fedward.deployment.bundle import AppSummary, app_dir, build_app
from fedward.deployment.hospital import entry_command
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


def shimmed_environment(tmp: Path) -> tuple[dict[str, str], Path]:
    """An environment whose Flower commands are wrappers that reorder PATH.

    Like a pyenv shim, ``flower-supernode`` and ``flower-superexec`` here put a
    folder of their own first on PATH before running Flower; that folder holds a
    ``flwr-clientapp`` that is not the gate and only notes that it ran (in the
    returned file). A daemon that found Flower's commands on PATH would let it
    run.
    """
    shims, ungated = tmp / "shims", tmp / "ungated"
    shims.mkdir()
    ungated.mkdir()
    marker = tmp / "ungated-clientapp-ran"
    front = f'PATH={shlex.quote(str(ungated))}:"$PATH"; export PATH\n'
    scripts = {
        shims / name: f'{front}exec {shlex.join(entry_command(name))} "$@"'
        for name in ("flower-supernode", "flower-superexec")
    }
    scripts[ungated / "flwr-clientapp"] = (
        f"echo ran >> {shlex.quote(str(marker))}\nexit 1"
    )
    for path, body in scripts.items():
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}, marker
