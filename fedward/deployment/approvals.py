"""Which app code this hospital has approved: SHA-256 pins in ``approved-apps.json``.

A person at the hospital reviews an app bundle with ``fedward hospital approve``
and its hash is recorded here; the gate (:mod:`fedward.deployment.gate`) reads this
file before every task and refuses any bundle whose hash is not in it.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from fedward.deployment.bundle import AppSummary
from fedward.errors import ConfigError, FedwardError


class UnapprovedAppError(FedwardError):
    """The server sent app code this hospital has not approved."""


def read_approvals(path: Path) -> list[dict[str, Any]]:
    """The approvals in ``path``; none if the file does not exist yet.

    Raises
    ------
    ConfigError
        If the file exists but is not an approvals file.
    """
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        approved = data["approved"]
        if not isinstance(approved, list) or not all(
            isinstance(a, dict) and isinstance(a.get("sha256"), str) for a in approved
        ):
            raise TypeError("'approved' must be a list of objects with a sha256")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not an approved-apps file ({exc})") from exc
    return approved


def _write(path: Path, approved: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"approved": approved}, indent=2) + "\n")
    tmp.replace(path)


def record_approval(path: Path, app: AppSummary) -> bool:
    """Pin ``app``'s hash; ``False`` if it was approved already."""
    approved = read_approvals(path)
    if any(a["sha256"] == app.sha256 for a in approved):
        return False
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    approved.append(
        {
            "sha256": app.sha256,
            "app": app.app,
            "version": app.version,
            "files": len(app.files),
            "approved-at": now,
        }
    )
    _write(path, approved)
    return True


def revoke(path: Path, prefix: str) -> list[dict[str, Any]]:
    """Remove the approvals whose hash starts with ``prefix``; return them.

    Raises
    ------
    ConfigError
        If ``prefix`` is shorter than 8 characters or matches nothing.
    """
    if len(prefix) < 8:
        raise ConfigError("give at least 8 characters of the hash to revoke")
    approved = read_approvals(path)
    gone = [a for a in approved if a["sha256"].startswith(prefix.lower())]
    if not gone:
        raise ConfigError(f"{path}: no approved app has a hash starting {prefix!r}")
    _write(path, [a for a in approved if a not in gone])
    return gone


def check_approved(content: bytes, path: Path, site: str) -> AppSummary:
    """The bundle's summary if ``site`` approved it; otherwise refuse.

    Raises
    ------
    UnapprovedAppError
        Naming the bundle, its hash and how to review it.
    """
    app = AppSummary.from_fab(content)
    if any(a["sha256"] == app.sha256 for a in read_approvals(path)):
        return app
    raise UnapprovedAppError(
        f"hospital {site} refuses app {app.app} {app.version} "
        f"(sha256 {app.sha256}): not in its approved apps ({path}). "
        "To review it: fedward hospital approve --config <site.toml> --fab <file>"
    )
