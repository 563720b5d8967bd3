"""The aggregation server's Flower ServerApp: runs FedAvg and writes the run folder.

The run folder gets the latest global weights every round (``model.pt``), signed
(``manifest.json``: by the server's model-signing key when deployed, a run-local
key in simulation); after the last round every hospital is sent the signed final
model (:mod:`fedward.fl.delivery`). What is made from the weights afterwards
(exports, plots, the study report) is done outside the app, by ``fedward
simulate`` / ``fedward server`` or ``fedward report``, so that it is not part of
the code hospitals approve.
"""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from fedward.config import FedwardConfig
from fedward.fl.central import make_central_evaluator
from fedward.fl.data_check import federated_data_check
from fedward.fl.delivery import deliver_final_model
from fedward.fl.protocol import metric_record, to_arrays
from fedward.fl.recorder import RunRecorder
from fedward.fl.secagg.strategy import SecureAggregation, skip_data_check
from fedward.fl.strategies import FedwardFedAvg
from fedward.learning.loops import seed_everything
from fedward.models.checkpoint import ModelCard, save_checkpoint
from fedward.models.groupnorm import build_run_model
from fedward.runfolder import RunFolder

logger = logging.getLogger(__name__)


def run_federation(grid: Grid, config: FedwardConfig) -> dict[str, object]:
    """Run ``num-server-rounds`` of FedAvg over the grid; return the run summary."""
    folder = RunFolder(config.run_dir)
    recorder = RunRecorder(folder.path, config)
    signer = folder.signer()
    seed_everything(config.seed)
    model = build_run_model(config)
    fedavg = FedwardFedAvg(
        recorder=recorder,
        class_names=config.classes,
        fraction_train=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_train_nodes=config.min_train_nodes,
        min_evaluate_nodes=config.min_evaluate_nodes,
        min_available_nodes=config.min_available_nodes,
    )
    central = make_central_evaluator(config)
    strategy: Strategy = fedavg
    if config.secure_aggregation:  # the server sees only sums (docs/privacy.md)
        strategy = SecureAggregation(strategy, config, recorder)
        skip_data_check(folder)
    else:
        check = federated_data_check(grid, config, folder)
        fedavg.node_names.update({int(n): s for n, s in check["nodes"].items()})

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round > 0:  # keep the latest global weights on disk every round
            state = arrays.to_torch_state_dict()
            card = ModelCard.of_run(config, server_round)
            save_checkpoint(folder.checkpoint, card, state)
            folder.sign(signer, card.meta())
        if central is None:
            return None
        metrics = central(arrays.to_torch_state_dict())
        recorder.record_central(server_round, metrics)
        return metric_record(metrics)

    result = strategy.start(
        grid=grid,
        initial_arrays=to_arrays(model),
        num_rounds=config.num_server_rounds,
        timeout=config.round_timeout,
        evaluate_fn=evaluate_fn,
    )
    summary = recorder.finish()
    card = ModelCard.of_run(config, config.num_server_rounds)
    deliver_final_model(grid, folder, card, result.arrays, signer)
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
