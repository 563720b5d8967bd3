"""``flwr-clientapp`` behind a gate: refuse app code the hospital has not approved.

``fedward hospital`` puts a ``flwr-clientapp`` script that runs this module on
its SuperNode's PATH; Flower's SuperExec starts that command for every task. The
gate lets Flower's own ClientApp process pull the task, then checks the bundle's
SHA-256 against the hospital's approvals *before* Flower unpacks it. Unapproved
code is never unpacked, imported or run: the task fails and the server gets an
error reply carrying the refusal. Runtime dependency installation is always off.

Flower's ``--trusted-entities`` would do the signer variant of this, but the
open-source SuperLink never marks a bundle as verifiable (``valid_license``), so
a SuperNode given trusted entities refuses every run; hence this gate.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedward.console import LOG_FORMAT
from fedward.deployment.approvals import check_approved

logger = logging.getLogger("fedward.gate")

APPROVALS_ENV = "FEDWARD_APPROVED_APPS"
SITE_ENV = "FEDWARD_SITE"
NO_INSTALL_FLAG = "--allow-runtime-dependency-installation"


def _forget_fedward() -> None:
    """Drop the gate's own fedward modules so the approved bundle's are imported."""
    for name in [m for m in sys.modules if m == "fedward" or m.startswith("fedward.")]:
        del sys.modules[name]


def gated(
    install: Callable[..., Any], approvals: Path, site: str
) -> Callable[..., Any]:
    """Wrap Flower's ``install_from_fab`` so it first checks the approvals."""

    def install_if_approved(fab: bytes | Path, *args: Any, **kwargs: Any) -> Any:
        content = fab if isinstance(fab, bytes) else Path(fab).read_bytes()
        try:
            app = check_approved(content, approvals, site)
        except Exception as exc:
            logger.error("%s", exc)
            raise
        logger.info("%s: running approved app %s %s (sha256 %s)",
                    site, app.app, app.version, app.sha256[:16])  # fmt: skip
        _forget_fedward()
        return install(fab, *args, **kwargs)

    return install_if_approved


def main() -> None:
    """Run Flower's ClientApp process with the approval check in front."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger("fedward").addHandler(handler)
    logging.getLogger("fedward").setLevel(logging.INFO)
    from flwr.supernode.cli import flwr_clientapp
    from flwr.supernode.runtime import run_clientapp as runtime

    approvals = os.environ.get(APPROVALS_ENV)
    # fail closed: without approvals, or if Flower no longer installs through the
    # function we wrap, nothing runs
    if not approvals:
        sys.exit(f"fedward gate: {APPROVALS_ENV} is not set; refusing to run any app")
    if "install_from_fab" not in runtime.run_clientapp.__code__.co_names:
        sys.exit("fedward gate: this Flower version is not supported; refusing")
    runtime.install_from_fab = gated(  # type: ignore[attr-defined]
        runtime.install_from_fab,  # type: ignore[attr-defined]
        Path(approvals),
        os.environ.get(SITE_ENV, "this hospital"),
    )
    sys.argv = ["flwr-clientapp", *(a for a in sys.argv[1:] if a != NO_INSTALL_FLAG)]
    flwr_clientapp()


if __name__ == "__main__":
    main()
