"""Approved code: app bundles, the approvals file, the gate and ``hospital approve``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fedward.config import SiteConfig
from fedward.deployment.approvals import (
    UnapprovedAppError,
    check_approved,
    read_approvals,
    record_approval,
    revoke,
)
from fedward.deployment.bundle import AppBundleError, AppSummary, build_app
from fedward.deployment.gate import APPROVALS_ENV
from fedward.deployment.hospital import gated_environment
from fedward.errors import ConfigError
from tests.deploy import other_app, site_file, this_app


def test_the_bundle_is_the_package_code_and_rebuilds_to_the_same_hash() -> None:
    content = build_app()
    app = AppSummary.from_fab(content)

    assert app.sha256 == hashlib.sha256(content).hexdigest() == this_app().sha256
    assert (app.app, app.version) == ("fedward/fedward", "0.1.0")
    assert app.components["clientapp"] == "fedward.fl.client_app:app"
    paths = {f.path for f in app.files}
    assert "fedward/fl/client_app.py" in paths
    assert all(p == "pyproject.toml" or p.startswith("fedward/") for p in paths)


def test_one_changed_line_is_another_app(tmp_path: Path) -> None:
    other = AppSummary.from_fab(other_app(tmp_path).read_bytes())

    assert other.sha256 != this_app().sha256
    assert other.differences(this_app()) == ["~ fedward/fl/client_app.py"]


def test_a_file_that_is_not_a_bundle_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(AppBundleError, match="not a Flower app bundle"):
        AppSummary.from_fab(b"MZ\x90\x00 not a zip")


def test_only_approved_hashes_pass_until_revoked(tmp_path: Path) -> None:
    approvals = tmp_path / "approved-apps.json"
    content = build_app()

    with pytest.raises(UnapprovedAppError, match=this_app().sha256):
        check_approved(content, approvals, "st-mary")
    assert record_approval(approvals, this_app())
    assert not record_approval(approvals, this_app())  # no duplicate entry
    assert check_approved(content, approvals, "st-mary").sha256 == this_app().sha256
    other = other_app(tmp_path).read_bytes()
    with pytest.raises(UnapprovedAppError, match="st-mary refuses"):
        check_approved(other, approvals, "st-mary")

    assert [a["sha256"] for a in revoke(approvals, this_app().sha256[:12])] == [
        this_app().sha256
    ]
    with pytest.raises(UnapprovedAppError):
        check_approved(content, approvals, "st-mary")


def test_a_damaged_approvals_file_is_an_error_not_an_empty_list(
    tmp_path: Path,
) -> None:
    approvals = tmp_path / "approved-apps.json"
    approvals.write_text('{"approved": [{"hash": "abc"}]}')

    with pytest.raises(ConfigError, match="not an approved-apps file"):
        read_approvals(approvals)
    with pytest.raises(ConfigError, match="at least 8"):
        revoke(approvals, "abc")


GATE_PROBE = """
import json, sys
from pathlib import Path
from fedward.deployment.gate import gated
import fedward.deployment.bundle
installed = []
install = gated(lambda fab, *a, **k: installed.append(len(fab)), Path(sys.argv[1]), "x")
for path in sys.argv[2:]:
    try:
        install(Path(path).read_bytes(), skip_prompt=True)
    except Exception as exc:
        installed.append(type(exc).__name__)
left = sorted(m for m in sys.modules if m.startswith("fedward"))
print(json.dumps({"installed": installed, "fedward-modules": left}))
"""


def test_the_gate_installs_approved_bundles_only_and_then_lets_them_import(
    tmp_path: Path,
) -> None:
    approvals = tmp_path / "approved.json"
    record_approval(approvals, this_app())
    (tmp_path / "this.fab").write_bytes(build_app())
    other = other_app(tmp_path)

    probe = subprocess.run(
        [sys.executable, "-c", GATE_PROBE, str(approvals), str(other),
         str(tmp_path / "this.fab")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip

    result = json.loads(probe.stdout)
    size = (tmp_path / "this.fab").stat().st_size
    assert result["installed"] == ["UnapprovedAppError", size]
    # after approval the gate's own fedward is gone, so the bundle's is imported
    assert result["fedward-modules"] == []
    assert "refuses app" in probe.stderr


def test_the_gate_refuses_everything_without_an_approvals_file(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != APPROVALS_ENV}
    gate = subprocess.run(
        [sys.executable, "-m", "fedward.deployment.gate", "--insecure"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert gate.returncode != 0
    assert "refusing to run any app" in gate.stderr


def test_the_daemon_puts_the_gate_in_front_of_flowers_clientapp(
    tmp_path: Path,
) -> None:
    site = SiteConfig.from_site_file(
        site_file(
            tmp_path, "st-mary", data_path="x", superlink="127.0.0.1:1", insecure=True
        )
    )
    env = gated_environment(site)

    found = shutil.which("flwr-clientapp", path=env["PATH"])
    assert found == str(tmp_path / "st-mary-daemon" / "bin" / "flwr-clientapp")
    # the SuperExec the SuperNode starts by name is the daemon's, and it is Flower's
    superexec = shutil.which("flower-superexec", path=env["PATH"])
    assert superexec == str(tmp_path / "st-mary-daemon" / "bin" / "flower-superexec")
    usage = subprocess.run([superexec, "--help"], env=env, capture_output=True,
                           text=True, timeout=60, check=True)  # fmt: skip
    assert "usage: flower-superexec" in usage.stdout
    assert env["FLWR_HOME"] == str(tmp_path / "st-mary-daemon" / "flwr")
    assert env[APPROVALS_ENV] == str(tmp_path / "st-mary-approved-apps.json")
    # the command Flower's SuperExec starts by name runs the gate, then Flower
    started = subprocess.run(
        ["flwr-clientapp", "--help"], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    assert "Run a Flower ClientApp" in started.stdout
    # no other kind of task (agent app, server app, ...) runs at a hospital
    for name in ("flwr-agentapp", "flwr-serverapp", "flwr-simulation"):
        refused = subprocess.run(
            [name, "--help"], env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert refused.returncode == 1
        assert f"st-mary runs only ClientApps; refused {name}" in refused.stderr


def run_approve(*args: str, answer: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedward", "hospital", *args],
        input=answer, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_hospital_approve_shows_the_bundle_and_asks_first(tmp_path: Path) -> None:
    site = site_file(tmp_path, "st-mary", approve=False, data_path="images")
    approvals = tmp_path / "st-mary-approved-apps.json"
    fab = other_app(tmp_path)

    declined = run_approve("approve", "--config", str(site), "--fab", str(fab),
                           answer="n\n")  # fmt: skip
    assert declined.returncode == 1
    assert not approvals.exists()
    for shown in (AppSummary.from_fab(fab.read_bytes()).sha256, "1 file(s) differ",
                  "~ fedward/fl/client_app.py", "clientapp     fedward.fl",
                  "a run installs nothing", "torch==2.14.1"):  # fmt: skip
        assert shown in declined.stdout

    accepted = run_approve("approve", "--config", str(site), "--fab", str(fab),
                           answer="y\n")  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert [a["sha256"] for a in json.loads(approvals.read_text())["approved"]] == [
        AppSummary.from_fab(fab.read_bytes()).sha256
    ]

    listed = run_approve("approvals", "--config", str(site))
    assert listed.stdout.startswith(AppSummary.from_fab(fab.read_bytes()).sha256)
    gone = run_approve("approvals", "--config", str(site), "--revoke", "0000000000")
    assert gone.returncode == 2
    assert "no approved app has a hash starting" in gone.stderr


def test_hospital_without_config_says_what_is_missing() -> None:
    result = run_approve()
    assert result.returncode != 0
    assert "--config" in result.stderr
    assert "Traceback" not in result.stderr
