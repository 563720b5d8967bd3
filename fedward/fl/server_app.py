"""The aggregation server's Flower ServerApp: runs a strategy, writes the run folder.

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

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from fedward.config import FedwardConfig
from fedward.fl.central import make_central_evaluator
from fedward.fl.data_check import federated_data_check
from fedward.fl.delivery import deliver_final_model
from fedward.fl.exported import ExportedRound
from fedward.fl.personalize import personalize
from fedward.fl.protocol import MetricKey, metric_record, to_arrays
from fedward.fl.recorder import RunRecorder
from fedward.fl.secagg.strategy import SecureAggregation, skip_data_check
from fedward.fl.strategies import make_strategy
from fedward.learning.local_norm import norm_keys
from fedward.learning.loops import seed_everything
from fedward.models.groupnorm import build_run_model
from fedward.runfolder import RunFolder

logger = logging.getLogger(__name__)


def run_federation(grid: Grid, config: FedwardConfig) -> dict[str, object]:
    """Run ``num-server-rounds`` of the configured strategy; return the run summary."""
    folder = RunFolder(config.run_dir)
    recorder = RunRecorder(folder.path, config)
    signer = folder.signer()
    seed_everything(config.seed)
    model = build_run_model(config)
    strategy = make_strategy(config, recorder)
    scale: list[float] = []
    flower: Strategy = strategy
    if config.secure_aggregation:  # the server sees only sums (docs/privacy.md)
        flower = SecureAggregation(strategy, config, recorder)
        skip_data_check(folder)
        if config.harmonize != "none":
            logger.warning(
                "secure aggregation: no pre-training data check, so no intensity "
                "landmarks and no harmonisation (harmonize = %r ignored)",
                config.harmonize,
            )
    else:
        check = federated_data_check(grid, config, folder)
        strategy.node_names.update({int(n): s for n, s in check["nodes"].items()})
        scale = check.get("harmonize-scale", [])
    central = make_central_evaluator(config, scale)
    # with local-norm, normalisation layers never travel: the server's files
    # carry the initial ones (a hospital evaluates and predicts with its own)
    local = norm_keys(model) if config.local_norm else frozenset()
    initial = to_arrays(model)
    kept = ExportedRound(config, folder, signer, scale)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        state = {**initial.to_torch_state_dict(), **arrays.to_torch_state_dict()}
        if server_round > 0:  # keep the latest global weights on disk every round
            kept.save(server_round, state, recorder.summary()["best-round"])
        if central is None:
            return None
        metrics = central(state)
        recorder.record_central(server_round, metrics)
        return metric_record(metrics)

    request = request_config(scale)
    flower.start(
        grid=grid,
        initial_arrays=to_arrays(model, exclude=local),
        num_rounds=config.num_server_rounds,
        timeout=config.round_timeout,
        train_config=request_config(scale),
        evaluate_config=request_config(scale),
        evaluate_fn=evaluate_fn,
    )
    card, state = kept.final()
    final = ArrayRecord(
        torch_state_dict={k: v for k, v in state.items() if k not in local}
    )
    personalization = personalize(grid, config, final, request, folder)
    summary = recorder.finish(
        **{"exported-round": card.server_round},
        **({"personalization": personalization} if personalization else {}),
    )
    deliver_final_model(grid, folder, card, ArrayRecord(torch_state_dict=state), signer)
    return summary


def request_config(scale: list[float]) -> ConfigRecord:
    """What every train and evaluate request carries besides the weights."""
    return ConfigRecord({MetricKey.HARMONIZE_SCALE: scale} if scale else {})


def make_server_app(config: FedwardConfig | None = None) -> ServerApp:
    """A ServerApp using ``config``, or the run's config when ``None``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = config or FedwardConfig.from_run_config(context.run_config)
        run_federation(grid, cfg)

    return app


app = make_server_app()
