"""Secure aggregation against plain FedAvg, side by side in one run.

For each number of simulated hospitals, the same federation three ways, on the
same data and model, with the same in-process transport (the stand-in the tests
use: every ClientApp, strategy and step is the real one, messages are handed
over in memory and their bytes counted exactly as Flower serialises them):

- ``plain``: fedward's FedAvg (weights and counts in clear);
- ``secure``: fedward's secure aggregation (``secure-aggregation = true``);
- ``secagg+``: Flower's legacy SecAgg+ (``SecAggPlusWorkflow`` with
  ``secaggplus_mod`` around a NumPyClient running the same Site), as the anchor;
  it masks only the weights (counts and metrics travel in clear).

In every mode the last hospital dies right after it sent its trained update (its
masked input in the secure modes), so the secure sums recover it. Reported per
round: wall seconds, and per hospital the bytes it uploaded and downloaded; and
how far the secure global weights are from plain FedAvg's.

Usage: ``python -m benchmarks.secure [--hospitals 3 10] [--image-size 150]
[--images 40] [--rounds 1] [--repeat 1] [--out benchmarks/results]``. Prints a Markdown
table and writes ``secure.json`` + ``secure.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, RecordDict

from fedward.config import FedwardConfig
from fedward.fl.client_app import make_client_app, site_for
from fedward.fl.protocol import to_arrays
from fedward.fl.recorder import RunRecorder
from fedward.fl.secagg.party import majority
from fedward.fl.secagg.strategy import SecureAggregation
from fedward.fl.strategies import FedwardFedAvg
from fedward.models import get_model
from fedward.simulation.demo import write_demo
from fedward.simulation.inprocess import InProcessGrid, act_as_server
from tests.fl.secagg.grid import RUN_ID

MODES = ("plain", "secure", "secagg+")


def initial(config: FedwardConfig) -> ArrayRecord:
    torch.manual_seed(config.seed)
    model = get_model(config.model, num_classes=2, image_size=config.image_size)
    return to_arrays(model)


def node_configs(hospitals: int) -> dict[int, dict[str, bool | float | int | str]]:
    return {
        1000 + i: {"partition-id": i, "num-partitions": hospitals}
        for i in range(hospitals)
    }


def fedward_round(config: FedwardConfig, grid: InProcessGrid) -> ArrayRecord:
    recorder = RunRecorder(Path(config.run_dir), config)
    inner = FedwardFedAvg(
        recorder=recorder,
        class_names=config.classes,
        min_train_nodes=config.num_hospitals,
        min_evaluate_nodes=2,
        min_available_nodes=2,
    )
    strategy = (
        SecureAggregation(inner, config, recorder)
        if config.secure_aggregation
        else inner
    )
    result = strategy.start(
        grid=grid, initial_arrays=initial(config), num_rounds=config.num_server_rounds
    )
    recorder.finish()
    return result.arrays


def secaggplus_round(config: FedwardConfig, grid: InProcessGrid) -> ArrayRecord:
    """Flower's legacy SecAgg+ over the same Site, model and transport."""
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    keys = list(initial(config).keys())

    class SiteClient(NumPyClient):
        def __init__(self, context: Context) -> None:
            self.site = site_for(context, config)

        def _model(self, parameters: list[np.ndarray]) -> torch.nn.Module:
            model = self.site.new_model()
            state = {
                k: torch.from_numpy(v) for k, v in zip(keys, parameters, strict=True)
            }
            model.load_state_dict(state)
            return model

        def fit(self, parameters: list[np.ndarray], cfg: dict[str, Any]) -> Any:
            model = self._model(parameters)
            result = self.site.fit(model, int(cfg.get("server_round", 1)))
            weights = [v.detach().numpy() for v in model.state_dict().values()]
            return weights, result.num_examples, {}

        def evaluate(self, parameters: list[np.ndarray], cfg: dict[str, Any]) -> Any:
            counts = self.site.evaluate(self._model(parameters), config.eval_split)
            return counts.loss, counts.num_examples, {"accuracy": counts.accuracy}

    app = ClientApp(
        client_fn=lambda context: SiteClient(context).to_client(),
        mods=[secaggplus_mod],
    )
    grid.apps = dict.fromkeys(grid.apps, app)
    start = [v.numpy() for v in initial(config).values()]
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=config.num_hospitals,
        min_evaluate_clients=2,
        min_available_clients=2,
        initial_parameters=ndarrays_to_parameters(start),
    )
    context = LegacyContext(
        Context(RUN_ID, 0, {}, RecordDict(), {}),
        config=ServerConfig(num_rounds=config.num_server_rounds),
        strategy=strategy,
    )
    n = config.num_hospitals
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=n, reconstruction_threshold=majority(n)
        )
    )
    workflow(grid, context)
    final = context.state.array_records["parameters"]  # the workflow's global model
    return ArrayRecord(dict(zip(keys, final.values(), strict=True)))


def run_mode(
    mode: str, config: FedwardConfig, drop: int
) -> tuple[dict[str, float], ArrayRecord]:
    """One federation in ``mode``; its timings and bytes, and the final weights."""
    nodes = node_configs(config.num_hospitals)
    grid = InProcessGrid(make_client_app(config), nodes, run_id=RUN_ID)
    grid.die_after[drop] = (
        "train.collect_masked_vectors" if mode == "secagg+" else "train"
    )
    run: Callable[[FedwardConfig, InProcessGrid], ArrayRecord] = (
        secaggplus_round if mode == "secagg+" else fedward_round
    )
    start = time.perf_counter()
    arrays = run(config, grid)
    wall = time.perf_counter() - start
    rounds, hospitals = config.num_server_rounds, config.num_hospitals
    return {
        "round-s": wall / rounds,
        "upload-bytes-per-hospital": sum(grid.sent_bytes.values()) / rounds / hospitals,
        "download-bytes-per-hospital": sum(grid.received_bytes.values())
        / rounds
        / hospitals,
    }, arrays


def bench(hospitals: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = work / f"data-{hospitals}"
    write_demo(data, hospitals, seed=0, max_images=args.images)
    base = FedwardConfig(
        data_root=str(data),
        num_hospitals=hospitals,
        image_size=args.image_size,
        local_epochs=args.epochs,
        num_server_rounds=args.rounds,
        min_train_nodes=hospitals,
    )
    results: dict[str, Any] = {}
    weights: dict[str, ArrayRecord] = {}
    drop = max(node_configs(hospitals))
    for attempt in range(args.repeat):  # interleaved: the load changes alike
        for mode in args.modes:
            config = base.replace(
                run_dir=str(work / f"run-{hospitals}-{mode}-{attempt}"),
                secure_aggregation=mode == "secure",
            )
            measured, weights[mode] = run_mode(mode, config, drop)
            print(f"{hospitals} hospitals, {mode}: {measured}", flush=True)
            best = results.get(mode)
            if best is None or measured["round-s"] < best["round-s"]:
                results[mode] = measured
    if "plain" in weights and "secure" in weights:
        plain, secure = weights["plain"], weights["secure"]
        results["secure-vs-plain-max-weight-diff"] = max(
            float(np.abs(secure[k].numpy() - plain[k].numpy()).max()) for k in plain
        )
    return results


def table(results: dict[str, Any], modes: list[str]) -> str:
    lines = [
        "| hospitals | mode | round s | upload MB/hospital | download MB/hospital "
        "| round time / plain | upload / plain |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for hospitals, r in results.items():
        plain = r.get("plain")
        for mode in modes:
            m = r[mode]
            time_ratio = f"{m['round-s'] / plain['round-s']:.2f}x" if plain else "-"
            up = "upload-bytes-per-hospital"
            bytes_ratio = f"{m[up] / plain[up]:.3f}x" if plain else "-"
            lines.append(
                f"| {hospitals} | {mode} | {m['round-s']:.1f} "
                f"| {m['upload-bytes-per-hospital'] / 1e6:.2f} "
                f"| {m['download-bytes-per-hospital'] / 1e6:.2f} "
                f"| {time_ratio} | {bytes_ratio} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hospitals", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--images", type=int, default=40, help="per hospital")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--repeat", type=int, default=1, help="best of N, interleaved")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    act_as_server(RUN_ID)
    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="fedward-secure-bench-"))
    results = {h: bench(h, args, work) for h in args.hospitals}
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "out"}
        | {"out": str(args.out)},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "secure.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(results, args.modes)
    diffs = {h: r.get("secure-vs-plain-max-weight-diff") for h, r in results.items()}
    text += f"\n\nsecure vs plain FedAvg, largest weight difference: {diffs}"
    (args.out / "secure.md").write_text(text + "\n")
    print(text)
    print(f"\n{report['machine']}, torch {report['torch']}; written to {args.out}")


if __name__ == "__main__":
    main()
