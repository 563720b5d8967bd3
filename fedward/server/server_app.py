"""The aggregation server's Flower ServerApp: runs FedAvg and writes the run folder."""

from __future__ import annotations

import logging
from pathlib import Path

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fedward.common.config import FedwardConfig
from fedward.common.export import (
    CHECKPOINT_FILE,
    ModelCard,
    export_model,
    save_checkpoint,
)
from fedward.common.models import get_model
from fedward.common.training import seed_everything
from fedward.common.weights import metric_record, to_arrays
from fedward.server.data_check import federated_data_check
from fedward.server.evaluation import make_central_evaluator
from fedward.server.report import RunRecorder
from fedward.server.strategy import FedwardFedAvg

logger = logging.getLogger(__name__)


def run_federation(grid: Grid, config: FedwardConfig) -> dict[str, object]:
    """Run ``num-server-rounds`` of FedAvg over the grid; return the run summary."""
    recorder = RunRecorder(Path(config.run_dir), config)
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
    federated_data_check(grid, config, Path(config.run_dir))

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round > 0:  # keep the latest global weights on disk every round
            state = arrays.to_torch_state_dict()
            card = ModelCard.of_run(config, server_round)
            save_checkpoint(Path(config.run_dir) / CHECKPOINT_FILE, card, state)
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
    export_model(
        ModelCard.of_run(config, config.num_server_rounds),
        result.arrays.to_torch_state_dict(),
        Path(config.run_dir) / "export",
    )
    return recorder.finish()


def make_server_app(config: FedwardConfig | None = None) -> ServerApp:
    """A ServerApp using ``config``, or the run's config when ``None``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = config or FedwardConfig.from_run_config(context.run_config)
        run_federation(grid, cfg)

    return app


app = make_server_app()
