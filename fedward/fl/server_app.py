"""The aggregation server's Flower ServerApp: runs a strategy, writes the run folder.

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

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from fedward.config import FedwardConfig
from fedward.fl.central import make_central_evaluator
from fedward.fl.data_check import federated_data_check
from fedward.fl.delivery import deliver_final_model
from fedward.fl.exported import ExportedRound
from fedward.fl.personalize import personalize
from fedward.fl.protocol import MetricKey, state_from_arrays, to_arrays
from fedward.fl.recorder import RunRecorder
from fedward.fl.resume import ResumePoint, capture_rng, new_run_id, restore_rng
from fedward.fl.rounds import run_rounds, strategy_state
from fedward.fl.secagg.strategy import SecureAggregation, skip_data_check
from fedward.fl.strategies import make_strategy
from fedward.learning.local_norm import norm_keys
from fedward.learning.loops import seed_everything
from fedward.models.groupnorm import build_run_model
from fedward.runfolder import RunFolder
from fedward.signing import Trust

logger = logging.getLogger(__name__)


def run_federation(grid: Grid, config: FedwardConfig) -> dict[str, object]:
    """Run ``num-server-rounds`` of the configured strategy; return the run summary.

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

        def examples(node_id: int, stats: dict[str, Any]) -> None:
            strategy.expect_examples(node_id, sum(stats["counts"]["train"].values()))

        check = federated_data_check(grid, config, folder, on_site=examples)
        strategy.node_names.update({int(n): s for n, s in check["nodes"].items()})
        scale = check.get("harmonize-scale", [])
    central = make_central_evaluator(config, scale)
    # with local-norm, normalisation layers never travel: the server's files
    # carry the initial ones (a hospital evaluates and predicts with its own)
    local = norm_keys(model) if config.norm_stays_local else frozenset()
    initial = to_arrays(model)
    kept = ExportedRound(config, folder, signer, scale)
    run_id = point.run_id if point else new_run_id()

    def evaluate_centrally(server_round: int, state: dict[str, Any]) -> None:
        if central is not None:
            recorder.record_central(server_round, central(state))

    def end_round(server_round: int, arrays: ArrayRecord) -> None:
        state = {**initial.to_torch_state_dict(), **state_from_arrays(arrays)}
        evaluate_centrally(server_round, state)
        card = kept.card(server_round)
        kept.keep_if_best(server_round, state, recorder.summary()["best-round"])
        ResumePoint(
            server_round, state, run_id, config.to_run_config(),
            strategy_state(strategy), capture_rng(), recorder.elapsed,
        ).save(folder, signer, card)  # fmt: skip

    if point is None:
        arrays = to_arrays(model, exclude=local)
        evaluate_centrally(0, initial.to_torch_state_dict())
    else:  # model.pt may be newer than its manifest if the crash came between
        kept.resumed(point.server_round, point.weights)
        arrays = ArrayRecord(
            torch_state_dict={k: v for k, v in point.weights.items() if k not in local}
        )
        strategy.load_state(point.strategy)
        restore_rng(point.rng)
    first = point.server_round + 1 if point else 1
    request = request_config(scale)
    run_rounds(
        grid,
        flower,
        arrays,
        rounds=range(first, config.num_server_rounds + 1),
        timeout=config.round_timeout,
        transfer_dtype=config.transfer_dtype,
        run_id=run_id,
        request=request,
        end_round=end_round,
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
