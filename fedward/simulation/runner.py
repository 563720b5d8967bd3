"""Run a whole federation on one machine through Flower's simulation engine."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedward.config import AttackConfig, FedwardConfig
from fedward.data.discovery import data_class_names, hospital_folders
from fedward.errors import ConfigError, DataError, FedwardError
from fedward.reporting.finish import finish_run
from fedward.runfolder import RunFolder
from fedward.simulation.attacks import Attacks, check_sites
from fedward.simulation.demo import demo_root, ensure_demo

logger = logging.getLogger(__name__)


def resolve_data_root(config: FedwardConfig) -> Path:
    """The data folder of a run; the built-in demo is written when no folder is set.

    Raises
    ------
    DataError
        If a configured data folder does not exist.
    """
    if not config.data_root:
        root = demo_root(config.num_hospitals, config.seed)
        if ensure_demo(root, config.num_hospitals, config.seed):
            logger.info("wrote synthetic demo data to %s", root)
        return root
    root = Path(config.data_root)
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    return root


def prepare(config: FedwardConfig, *, scenario: str = "simulation") -> FedwardConfig:
    """Settle what depends on the data before a simulation starts.

    Class names come from the data; the node minimums never exceed the number of
    hospitals; a run folder is named when none is given.
    """
    root = resolve_data_root(config)
    hospitals = config.num_hospitals
    if config.partition == "by-folder":
        hospitals = len(hospital_folders(root))
        if hospitals != config.num_hospitals and config.data_root:
            logger.warning(
                "%s has %d hospital folders; simulating %d hospitals, not %d",
                root,
                hospitals,
                hospitals,
                config.num_hospitals,
            )
    classes = data_class_names(root)
    if len(classes) < 2:
        raise DataError(
            f"{root}: needs class folders of at least two classes, found {classes}"
        )
    run_dir = config.run_dir
    if run_dir == FedwardConfig().run_dir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = str(Path("runs") / f"{stamp}-{scenario}")
    return config.replace(
        class_names=",".join(classes),
        data_root=str(root),
        num_hospitals=hospitals,
        min_train_nodes=min(config.min_train_nodes, hospitals),
        min_evaluate_nodes=min(config.min_evaluate_nodes, hospitals),
        min_available_nodes=min(config.min_available_nodes, hospitals),
        run_dir=run_dir,
    )


def backend_config(cpus: int | None = None) -> dict[str, Any]:
    """Ray settings: one client at a time, each using every core (or a GPU)."""
    import torch

    cpus = cpus or os.cpu_count() or 1
    gpus = 1.0 if torch.cuda.is_available() else 0.0
    return {
        "client_resources": {"num_cpus": cpus, "num_gpus": gpus},
        "init_args": {
            "num_cpus": cpus,
            "num_gpus": int(gpus),
            "include_dashboard": False,
            "logging_level": logging.ERROR,
        },
    }


def site_names(config: FedwardConfig) -> list[str]:
    """The names of a prepared simulation's hospitals."""
    if config.partition == "by-folder":
        return [folder.name for folder in hospital_folders(Path(config.data_root))]
    return [f"hospital-{i + 1}" for i in range(config.num_hospitals)]


def run(config: FedwardConfig, attacks: Sequence[AttackConfig] = ()) -> dict[str, Any]:
    """Run the simulation described by a prepared config; return ``summary.json``.

    ``attacks`` make the hospitals they name misbehave (to test defences).

    Raises
    ------
    ConfigError
        If an attack names a hospital the simulation does not have.
    FedwardError
        If the federation ended without writing a summary.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # quiet on CPU
    from flwr.simulation import run_simulation

    from fedward.fl.client_app import make_client_app
    from fedward.fl.server_app import make_server_app

    if config.partition == "by-folder" and config.num_hospitals < 1:
        raise ConfigError("config: no hospitals to simulate")
    check_sites(attacks, site_names(config))
    folder = RunFolder(config.run_dir)
    folder.file(RunFolder.SUMMARY).unlink(missing_ok=True)
    hook = None
    if attacks:
        logger.warning(
            "simulating misbehaving hospitals: %s",
            ", ".join(f"{a.site} ({a.kind} x{a.factor:g})" for a in attacks),
        )
        folder.write_json(RunFolder.ATTACKS, [a.to_mapping() for a in attacks])
        hook = Attacks(attacks, config.seed)
    run_simulation(
        server_app=make_server_app(config),
        client_app=make_client_app(config, hook=hook),
        num_supernodes=config.num_hospitals,
        backend_config=backend_config(),
    )
    if not folder.has(RunFolder.SUMMARY):
        raise FedwardError(
            f"the simulation ended without results; see the log ({config.run_dir})"
        )
    finish_run(folder)
    result: dict[str, Any] = folder.read_json(RunFolder.SUMMARY)
    return result
