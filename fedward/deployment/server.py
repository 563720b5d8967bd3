"""``fedward server``: a Flower SuperLink with TLS and node authentication, one run.

Starts ``flower-superlink`` (TLS from the consortium's certificates, SuperNode
authentication on), registers the hospitals' public keys, submits the fedward
app with ``flwr run`` and waits for it; SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import FrameType

from fedward.config import FedwardConfig, ServerConfig
from fedward.deployment.bundle import AppSummary, app_dir, build_app
from fedward.deployment.certs import signing_paths
from fedward.errors import ConfigError, FedwardError
from fedward.fl.resume import ResumePoint
from fedward.runfolder import RunFolder
from fedward.signing import SIGNING_CERT_ENV, SIGNING_KEY_ENV, Signer, Trust

logger = logging.getLogger(__name__)

CONNECTION = "fedward"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"server config: 'address' must be host:port, got {address!r}"
        )
    return host, int(port)


def superlink_command(server: ServerConfig) -> list[str]:
    """The ``flower-superlink`` command line for these settings."""
    host, port = _host_port(server.address)
    command = [
        shutil.which("flower-superlink") or "flower-superlink",
        "--host", host, "--port", str(port),
        "--database", str(Path(server.state_dir) / "superlink.db"),
        "--disable-runtime-dependency-installation",
    ]  # fmt: skip
    if server.insecure:
        logger.warning("plain-text mode: no TLS and no node authentication")
        return [*command, "--insecure"]
    certs = Path(server.certs_dir)
    for needed in ("ca.crt", "server/server.crt", "server/server.key"):
        if not (certs / needed).is_file():
            raise ConfigError(
                f"server config: {certs / needed} is missing (fedward certs)"
            )
    return [
        *command,
        "--ssl-ca-certfile", str(certs / "ca.crt"),
        "--ssl-certfile", str(certs / "server" / "server.crt"),
        "--ssl-keyfile", str(certs / "server" / "server.key"),
        "--enable-supernode-auth",
    ]  # fmt: skip


def write_connection(server: ServerConfig, flwr_home: Path) -> None:
    """The ``flwr`` CLI's connection to our SuperLink (its own config file)."""
    host, port = _host_port(server.address)
    local = "127.0.0.1" if host in ("0.0.0.0", "") else host
    lines = [
        "[superlink]",
        f'default = "{CONNECTION}"',
        "",
        f"[superlink.{CONNECTION}]",
        f'address = "{local}:{port}"',
    ]
    if server.insecure:
        lines.append("insecure = true")
    else:
        lines.append(f'root-certificates = "{Path(server.certs_dir) / "ca.crt"}"')
    flwr_home.mkdir(parents=True, exist_ok=True)
    (flwr_home / "config.toml").write_text("\n".join(lines) + "\n")


def _wait_for_port(
    address: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    host, port = _host_port(address)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FedwardError("the SuperLink exited at start-up; see superlink.log")
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise FedwardError(f"the SuperLink did not listen on {address} in {timeout:.0f}s")


def model_signer(server: ServerConfig) -> Signer:
    """The server's model-signing key and certificate from its certs folder.

    Raises
    ------
    ConfigError
        If they are missing (``fedward certs signing`` issues them) or unusable.
    """
    cert, key = signing_paths(Path(server.certs_dir))
    if not cert.is_file() or not key.is_file():
        raise ConfigError(
            f"server config: no model-signing key in {cert.parent} "
            "(fedward certs signing --out <certs> issues one from the CA)"
        )
    return Signer.from_files(cert, key)


def signing_environment(server: ServerConfig) -> dict[str, str]:
    """What tells the ServerApp (started by the SuperLink) which key signs models.

    Plain-text mode (tests on one machine) has no consortium and signs with a
    run-local key.
    """
    if server.insecure:
        return {}
    model_signer(server)  # fail early, before the SuperLink starts
    cert, key = signing_paths(Path(server.certs_dir))
    return {SIGNING_CERT_ENV: str(cert), SIGNING_KEY_ENV: str(key)}


def check_resume(run: FedwardConfig) -> int:
    """Check the run folder can be resumed, before the SuperLink starts.

    Its latest resume point must carry the signature of the key this server
    signs with now (the environment set by :func:`signing_environment`) and
    have been saved with the same ``[federation]`` settings. Returns the last
    complete round.

    Raises
    ------
    ResumeError
        If there is no complete round to resume from.
    SignatureError
        If the resume point is unsigned, changed or signed by another key.
    ConfigError
        Naming every federation setting that differs from the saved run's.
    """
    folder = RunFolder(run.run_dir)
    point = ResumePoint.load_latest(folder, Trust.of_signer(folder.signer()))
    point.check_config(run)
    logger.info(
        "resuming %s after round %d of %d",
        folder.path,
        point.server_round,
        run.num_server_rounds,
    )
    return point.server_round


def authorized_keys(server: ServerConfig) -> list[Path]:
    """The hospitals' public keys allowed to join."""
    folder = Path(server.authorized_keys or Path(server.certs_dir) / "hospitals")
    return sorted(folder.rglob("*.pub"))


def _run_failures(env: dict[str, str]) -> int:
    """1 if the SuperLink reports a run that did not complete, else 0."""
    listing = subprocess.run(
        ["flwr", "ls", CONNECTION, "--format", "json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        runs = json.loads(listing.stdout)["runs"]
    except (json.JSONDecodeError, KeyError, TypeError):
        logger.error("could not read the run's status: %s", listing.stderr.strip())
        return 1
    failed = [r for r in runs if r.get("status") != "finished:completed"]
    for run in failed:
        logger.error("run %s ended %s: %s", run.get("run-id"), run.get("status"),
                     run.get("status-details") or "see the log above")  # fmt: skip
    return 1 if failed or not runs else 0


def run_server(server: ServerConfig, run: FedwardConfig, run_config: Path) -> int:
    """Serve one federation; return the ``flwr run`` exit code."""
    state = Path(server.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    # a fresh SuperLink state per federation: exactly the keys present now may join,
    # so removing a hospital's .pub and restarting removes the hospital
    (state / "superlink.db").unlink(missing_ok=True)
    flwr_home = state / "flwr-home"
    write_connection(server, flwr_home)
    env = {**os.environ, "FLWR_HOME": str(flwr_home), **signing_environment(server)}
    log = (state / "superlink.log").open("ab")
    superlink = subprocess.Popen(
        superlink_command(server), stdout=log, stderr=log, env=env
    )
    children = [superlink]

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("stopping (signal %d)", signum)
        for child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        _wait_for_port(server.address, superlink, 180)  # slow starts under load
        if not server.insecure:
            for key in authorized_keys(server):
                subprocess.run(
                    ["flwr", "supernode", "register", str(key), CONNECTION],
                    env=env, check=True, capture_output=True,
                )  # fmt: skip
                logger.info("registered hospital key %s", key.parent.name or key.name)
        # flwr run builds the same bundle (deterministically): publish its hash
        # and the file, which hospitals review with fedward hospital approve
        bundle = build_app()
        (state / "app.fab").write_bytes(bundle)
        app = AppSummary.from_fab(bundle)
        logger.info("app %s %s sha256 %s (%s); hospitals must have approved it",
                    app.app, app.version, app.sha256, state / "app.fab")  # fmt: skip
        submit = subprocess.Popen(
            ["flwr", "run", str(app_dir()), CONNECTION, "--run-config", str(run_config),
             "--stream"],
            env=env,
        )  # fmt: skip
        children.append(submit)
        code = submit.wait()
        # `flwr run --stream` exits 0 even when the ServerApp raised: ask the
        # SuperLink how the run (the only one in its fresh state) ended
        return code or _run_failures(env)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        log.close()
