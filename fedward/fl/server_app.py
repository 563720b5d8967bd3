"""The aggregation server's Flower ServerApp: runs FedAvg and writes the run folder.

The run folder gets the latest global weights every round (``model.pt``), signed
(``manifest.json``: by the server's model-signing key when deployed, a run-local
key in simulation), and a signed resume point (:mod:`fedward.fl.resume`) that
``--resume`` continues from; rounds stream each reply into the average as it
arrives (:mod:`fedward.fl.rounds`). After the last round every hospital is sent
the signed final model (:mod:`fedward.fl.delivery`). What is made from the
weights afterwards (exports, plots, the study report) is done outside the app,
by ``fedward simulate`` / ``fedward server`` or ``fedward report``, so that it
is not part of the code hospitals approve.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedward.config import FedwardConfig
from fedward.fl.central import make_central_evaluator
from fedward.fl.data_check import federated_data_check
from fedward.fl.delivery import deliver_final_model
from fedward.fl.protocol import to_arrays
from fedward.fl.recorder import RunRecorder
from fedward.fl.resume import ResumePoint, capture_rng, new_run_id, restore_rng
from fedward.fl.rounds import run_rounds, strategy_state
from fedward.fl.strategies import FedwardFedAvg
from fedward.learning.loops import seed_everything
from fedward.models import get_model
from fedward.models.checkpoint import ModelCard, save_checkpoint
from fedward.runfolder import RunFolder
from fedward.signing import Trust

logger = logging.getLogger(__name__)


def run_federation(grid: Grid, config: FedwardConfig) -> dict[str, object]:
    """Run ``num-server-rounds`` of FedAvg over the grid; return the run summary.

    With ``resume`` set, the run continues after the latest signed resume point
    in its run folder (:mod:`fedward.fl.resume`), checked first.
    """
    folder = RunFolder(config.run_dir)
    signer = folder.signer()
    point = (
        ResumePoint.load_latest(folder, Trust.of_signer(signer))
        if config.resume
        else None
    )
    if point is not None:
        point.check_config(config)
        logger.info("resuming %s after round %d", folder.path, point.server_round)
    recorder = RunRecorder(
        folder.path,
        config,
        resumed_round=point.server_round if point else 0,
        elapsed=point.elapsed if point else 0.0,
    )
    seed_everything(config.seed)
    model = get_model(
        config.model,
        num_classes=config.num_classes,
        in_channels=config.in_channels,
        image_size=config.image_size,
    )
    strategy = FedwardFedAvg(
        recorder=recorder,
        class_names=config.classes,
        fraction_train=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_train_nodes=config.min_train_nodes,
        min_evaluate_nodes=config.min_evaluate_nodes,
        min_available_nodes=config.min_available_nodes,
    )
    central = make_central_evaluator(config)

    def evaluate_centrally(server_round: int, arrays: ArrayRecord) -> None:
        if central is not None:
            recorder.record_central(server_round, central(arrays.to_torch_state_dict()))

    run_id = point.run_id if point else new_run_id()

    def end_round(server_round: int, arrays: ArrayRecord) -> None:
        evaluate_centrally(server_round, arrays)
        ResumePoint(
            server_round, arrays.to_torch_state_dict(), run_id,
            config.to_run_config(), strategy_state(strategy), capture_rng(),
            recorder.elapsed,
        ).save(folder, signer, ModelCard.of_run(config, server_round))  # fmt: skip

    def examples(node_id: int, stats: dict[str, Any]) -> None:
        strategy.expect_examples(node_id, sum(stats["counts"]["train"].values()))

    federated_data_check(grid, config, folder, on_site=examples)
    if point is None:
        arrays = to_arrays(model)
        evaluate_centrally(0, arrays)
    else:  # model.pt may be newer than its manifest if the crash came between
        card = ModelCard.of_run(config, point.server_round)
        save_checkpoint(folder.checkpoint, card, point.weights)
        folder.sign(signer, card.meta())
        arrays = ArrayRecord(torch_state_dict=point.weights)
        strategy.load_state(point.strategy)
        restore_rng(point.rng)
    first = point.server_round + 1 if point else 1
    arrays = run_rounds(
        grid,
        strategy,
        arrays,
        rounds=range(first, config.num_server_rounds + 1),
        timeout=config.round_timeout,
        transfer_dtype=config.transfer_dtype,
        run_id=run_id,
        end_round=end_round,
    )
    summary = recorder.finish()
    card = ModelCard.of_run(config, config.num_server_rounds)
    deliver_final_model(grid, folder, card, arrays, signer)
    return summary


def make_server_app(config: FedwardConfig | None = None) -> ServerApp:
    """A ServerApp using ``config``, or the run's config when ``None``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = config or FedwardConfig.from_run_config(context.run_config)
        run_federation(grid, cfg)

    return app


app = make_server_app()
