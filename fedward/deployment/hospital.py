"""``fedward hospital``: one hospital's Flower SuperNode, configured by its site.toml.

The site's own file names the server, the CA it trusts, its node key and its
data; the ClientApp reads the same file (``site-config`` in the node config), so
nothing about the data comes from the server. The SuperNode reconnects while the
server is away; SIGTERM stops it cleanly.

Every task Flower starts goes through the gate (:mod:`fedward.deployment.gate`): the
daemon puts a ``flwr-clientapp`` that runs it first on the SuperNode's PATH, so
only app code whose hash the hospital approved is unpacked and run. No process on
the way is looked up on PATH except by the daemon's own scripts: the SuperNode and
the SuperExec run from this interpreter's entry points, and the SuperExec's script
puts the gate first again, so a wrapper that prepends its own folder to PATH (a
pyenv shim does) cannot bring Flower's ungated ``flwr-clientapp`` forward.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from types import FrameType

from fedward.config import SiteConfig
from fedward.data.load import read_site
from fedward.deployment.approvals import read_approvals
from fedward.deployment.gate import APPROVALS_ENV, SITE_ENV
from fedward.errors import ConfigError

logger = logging.getLogger(__name__)


def entry_command(script: str) -> list[str]:
    """Run the console script ``script`` with this interpreter, not found on PATH.

    Raises
    ------
    ConfigError
        If no installed package provides ``script``.
    """
    found = entry_points(group="console_scripts", name=script)
    if not found:
        raise ConfigError(f"'{script}' is not installed (pip install flwr)")
    (entry,) = found
    module, _, function = entry.value.partition(":")
    code = (
        f"import sys; from {module} import {function} as main; "
        f"sys.argv[0] = {script!r}; sys.exit(main())"
    )
    return [sys.executable, "-c", code]


def supernode_command(site: SiteConfig, site_file: Path) -> list[str]:
    """The ``flower-supernode`` command line for a hospital.

    Raises
    ------
    ConfigError
        Listing every missing connection setting.
    """
    problems = []
    if not site.superlink:
        problems.append("site config: 'superlink' (host:port of the server) is not set")
    if not site.insecure:
        for key in ("root_certificates", "node_key"):
            value = getattr(site, key)
            if not value or not Path(value).is_file():
                name = key.replace("_", "-")
                problems.append(f"site config: '{name}' must name an existing file")
    if problems:
        raise ConfigError(problems)
    command = [
        *entry_command("flower-supernode"),
        "--superlink", site.superlink,
        "--port", str(site.api_port),
        "--node-config", f'site-config="{site_file.resolve()}"',
    ]  # fmt: skip
    if site.connect_retries:
        command += ["--max-retries", str(site.connect_retries)]
    if site.insecure:
        logger.warning("plain-text mode: the connection to the server is not encrypted")
        return [*command, "--insecure"]
    return [
        *command,
        "--root-certificates", site.root_certificates,
        "--auth-supernode-private-key", site.node_key,
    ]  # fmt: skip


def gated_environment(site: SiteConfig) -> dict[str, str]:
    """The SuperNode's environment: the gate first on PATH, a private FLWR_HOME.

    The SuperNode starts ``flower-superexec`` by name, and Flower's SuperExec
    starts each task's process by command name (``flwr-clientapp`` for a
    ClientApp). Our ``flower-superexec`` puts this folder first on PATH again
    and runs Flower's from this interpreter; our ``flwr-clientapp`` runs the
    approval check, then Flower's own ClientApp process; every other task
    command (an agent app, a server app, ...) is shadowed by one that refuses,
    since a hospital runs only ClientApps. Approved bundles are unpacked under
    ``daemon-dir``.
    """
    from flwr.supercore.constant import TASK_TYPE_TO_COMMAND, TaskType

    home = Path(site.daemon_dir)
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    gate_first = f'PATH={shlex.quote(str(bin_dir))}:"$PATH"; export PATH\n'
    superexec = shlex.join(entry_command("flower-superexec"))
    scripts = {"flower-superexec": f'{gate_first}exec {superexec} "$@"'}
    for task, name in TASK_TYPE_TO_COMMAND.items():
        if task == TaskType.CLIENT_APP:
            gate = f"{shlex.quote(sys.executable)} -m fedward.deployment.gate"
            scripts[name] = f'{gate_first}exec {gate} "$@"'
        else:
            refusal = f"fedward: {site.name} runs only ClientApps; refused {name}"
            scripts[name] = f"echo {shlex.quote(refusal)} >&2\nexit 1"
    for name, body in scripts.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(home / "flwr"),
        APPROVALS_ENV: site.approved_apps,
        SITE_ENV: site.name,
    }


def run_hospital(
    site_file: Path, *, backoff: float = 2.0, max_backoff: float = 30.0
) -> int:
    """Keep the SuperNode running until SIGTERM; return 0 after a clean stop.

    Flower's SuperNode exits when it cannot reach or activate with the server
    (server down, key not registered yet). The daemon then starts it again after
    a back-off that doubles up to ``max_backoff``; ``max-restarts`` in the site
    file (0: no limit) bounds the attempts.
    """
    site = read_site(site_file)
    command = supernode_command(site, site_file)
    env = gated_environment(site)
    approved = read_approvals(Path(site.approved_apps))
    if not approved:
        logger.warning(
            "%s: no app approved in %s; every run is refused until one is "
            "(fedward hospital approve)", site.name, site.approved_apps,
        )  # fmt: skip
    for app in approved:
        logger.info("%s: approved %s %s sha256 %s", site.name,
                    app.get("app"), app.get("version"), app["sha256"][:16])  # fmt: skip
    stopping = False
    process: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        logger.info("%s: stopping (signal %d)", site.name, signum)
        if process is not None:
            process.terminate()

    signal.signal(signal.SIGTERM, stop)
    delay, attempts, code = backoff, 0, 0
    while not stopping:
        attempts += 1
        logger.info(
            "%s: SuperNode start %d for %s", site.name, attempts, site.superlink
        )
        process = subprocess.Popen(command, env=env)
        code = process.wait()
        if stopping:
            return 0
        if site.max_restarts and attempts > site.max_restarts:
            logger.error("%s: SuperNode exited %d; giving up", site.name, code)
            return code or 1
        logger.warning(
            "%s: SuperNode exited with code %d; restarting in %.0fs",
            site.name,
            code,
            delay,
        )
        time.sleep(delay)
        delay = min(delay * 2, max_backoff)
    return 0
