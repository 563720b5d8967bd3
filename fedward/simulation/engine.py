"""Flower's simulation engine (Ray), started the way ``flwr run`` starts it.

``flwr.simulation.run_simulation`` is deprecated in Flower 1.42 (it prints a
DEPRECATED block). ``flwr run`` against a local SuperLink in simulation mode
starts ``flower-superlink --simulation``, which starts a ``flwr-simulation``
process, which installs the app bundle and calls
``flwr.simulation.run_simulation._run_simulation``: the ServerApp in a thread
over Flower's in-memory grid, the ClientApps in Ray actors (the engine's only
backend). :func:`run_engine` calls that same function in this process, with the
apps already loaded, so a simulation is Flower's engine without the SuperLink
and simulation processes around it, and without the deprecated entry point.
``benchmarks/engine.py`` measures the choices (docs/scaling.md).

The function is private to Flower; fedward pins ``flwr==1.42.0`` and
``tests/simulation/test_engine.py`` checks its signature, so an upgrade that
changes it fails there first.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RaySettings:
    """How Flower's Ray backend runs the simulated hospitals' ClientApps.

    Parameters
    ----------
    actors
        ClientApp processes working in parallel; each gets ``cpus / actors``
        cores (one actor with every core trained fastest here, see
        docs/scaling.md).
    cpus
        Cores Ray may use on this machine (default: all).
    object_store_mib
        Ray's shared-memory object store, through which every message passes
        (default: Ray's, 30 % of memory).
    address
        An existing Ray cluster to use instead of starting one (``"auto"``, or
        ``host:port`` of its head); also read from ``RAY_ADDRESS``. Without it
        the simulation always starts its own Ray, even on a machine where a
        ``ray start`` cluster runs.
    """

    actors: int = 1
    cpus: int | None = None
    object_store_mib: int | None = None
    address: str = ""

    def backend_config(self) -> dict[str, Any]:
        """Flower's ``backend_config``: Ray's start arguments and actor resources."""
        import torch

        cpus = self.cpus or os.cpu_count() or 1
        gpus = 1.0 if torch.cuda.is_available() else 0.0
        per_actor = max(cpus // max(self.actors, 1), 1)
        init: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.ERROR,
        }
        address = self.address or os.environ.get("RAY_ADDRESS", "")
        if address:  # a cluster sets its own resources
            init["address"] = address
        else:
            # "local": a Ray of its own, even where `ray start` left a cluster
            # recorded in /tmp/ray (which Ray would otherwise join, refusing
            # num_cpus)
            init |= {"address": "local", "num_cpus": cpus, "num_gpus": int(gpus)}
            if self.object_store_mib:
                init["object_store_memory"] = self.object_store_mib * 2**20
        return {
            "client_resources": {
                "num_cpus": per_actor,
                "num_gpus": gpus / max(self.actors, 1),
            },
            "init_args": init,
        }


def run_engine(
    server_app: ServerApp,
    client_app: ClientApp,
    num_supernodes: int,
    settings: RaySettings,
    *,
    verbose: bool = False,
) -> None:
    """Run the apps with ``num_supernodes`` simulated hospitals; return when done.

    Raises
    ------
    RuntimeError
        If the ServerApp or the engine failed (Flower's own error).
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # quiet on CPU
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.telemetry import EventType

    backend = settings.backend_config()
    logger.debug("Ray backend: %s", backend)
    _run_simulation(
        num_supernodes=num_supernodes,
        exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        client_app=client_app,
        server_app=server_app,
        backend_name="ray",
        backend_config=backend,
        verbose_logging=verbose,
    )
