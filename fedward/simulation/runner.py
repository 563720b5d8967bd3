"""Run a whole federation on one machine through Flower's simulation engine."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedward.config import AttackConfig, FedwardConfig
from fedward.data.discovery import data_class_names, hospital_folders
from fedward.errors import ConfigError, DataError, FedwardError
from fedward.fl.resume import ResumePoint
from fedward.reporting.finish import finish_run
from fedward.runfolder import RunFolder
from fedward.signing import Trust
from fedward.simulation.attacks import Attacks, check_sites
from fedward.simulation.demo import demo_root, ensure_demo
from fedward.simulation.engine import RaySettings, run_engine

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


def resume_config(run_dir: Path) -> FedwardConfig:
    """The configuration to continue the run in ``run_dir`` with.

    The run's own ``config.json`` with ``resume`` set; its latest resume point
    is checked here already, so that a refusal comes before the engine starts.

    Raises
    ------
    DataError
        If the folder has no ``config.json``.
    ResumeError
        If it has no complete round to resume from.
    SignatureError
        If the latest resume point is unsigned, changed or signed by another key.
    """
    folder = RunFolder(run_dir)
    saved = folder.read_json(RunFolder.CONFIG)
    config = FedwardConfig.from_mapping(saved).replace(
        resume=True, run_dir=str(run_dir)
    )
    point = ResumePoint.load_latest(folder, Trust.of_signer(folder.signer()))
    point.check_config(config)
    logger.info(
        "%s: resuming after round %d of %d",
        run_dir,
        point.server_round,
        config.num_server_rounds,
    )
    return config


def site_names(config: FedwardConfig) -> list[str]:
    """The names of a prepared simulation's hospitals."""
    if config.partition == "by-folder":
        return [folder.name for folder in hospital_folders(Path(config.data_root))]
    return [f"hospital-{i + 1}" for i in range(config.num_hospitals)]


def saved_attacks(config: FedwardConfig) -> list[AttackConfig]:
    """The misbehaving hospitals a run in ``config.run_dir`` was started with."""
    folder = RunFolder(config.run_dir)
    if not folder.has(RunFolder.ATTACKS):
        return []
    return AttackConfig.from_tables(folder.read_json(RunFolder.ATTACKS))


def run(
    config: FedwardConfig,
    attacks: Sequence[AttackConfig] = (),
    settings: RaySettings | None = None,
    *,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the simulation described by a prepared config; return ``summary.json``.

    ``attacks`` make the hospitals they name misbehave (to test defences).

    Raises
    ------
    ConfigError
        If an attack names a hospital the simulation does not have.
    FedwardError
        If the federation ended without writing a summary.
    """
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
    elif not config.resume:  # not a resumed run's: a new run has no attackers
        folder.file(RunFolder.ATTACKS).unlink(missing_ok=True)
    run_engine(
        make_server_app(config),
        make_client_app(config, hook=hook),
        config.num_hospitals,
        settings or RaySettings(),
        verbose=verbose,
    )
    if not folder.has(RunFolder.SUMMARY):
        raise FedwardError(
            f"the simulation ended without results; see the log ({config.run_dir})"
        )
    finish_run(folder)
    result: dict[str, Any] = folder.read_json(RunFolder.SUMMARY)
    return result
