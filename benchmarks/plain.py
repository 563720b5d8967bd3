"""The baseline: the same federated work in one process, without Flower.

``train_only`` is what a federation must do at least: decode each hospital's
images once, then every round ``Site.fit`` at each hospital (the very calls the
ClientApp makes: channels-last, augmentation, validation each epoch), FedAvg by
hand (example-weighted, the same running sum as the server's), and
``Site.evaluate`` of the new global model at each hospital (on the validation
images too with ``export-round = "best"``), on images harmonised as the
federation harmonises them. One process, torch with every core: its best speed.

``everything`` adds what ``fedward simulate`` does besides: the pre-training data
check, the signed checkpoint and resume point every round (and the best round's
checkpoint), the run folder's
records and the final plot and export, so that the difference to the
simulation is Flower's engine alone.

Run as ``python -m benchmarks.plain DATA_ROOT RUN_DIR [--rounds N] [--epochs N]
[--everything]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fedward.config import FedwardConfig
from fedward.data.discovery import data_class_names, hospital_folders
from fedward.data.load import load_site, site_for_folder
from fedward.data.stats import compare_sites, site_statistics
from fedward.fl.data_check import harmonize_scale
from fedward.fl.recorder import RunRecorder
from fedward.fl.resume import ResumePoint, capture_rng, new_run_id
from fedward.learning.aggregation import RunningMean
from fedward.learning.loops import seed_everything
from fedward.learning.site import Site
from fedward.models.checkpoint import ModelCard, save_checkpoint
from fedward.reporting.finish import finish_run
from fedward.runfolder import RunFolder


def _config(data: Path, run_dir: Path, rounds: int, epochs: int) -> FedwardConfig:
    return FedwardConfig(
        data_root=str(data),
        run_dir=str(run_dir),
        num_server_rounds=rounds,
        local_epochs=epochs,
        class_names=",".join(data_class_names(data)),
    )


def federate(
    data: Path, run_dir: Path, rounds: int, epochs: int, *, everything: bool
) -> dict[str, float]:
    """Run the federation; return seconds per phase (and the final global F1)."""
    config = _config(data, run_dir, rounds, epochs)
    times: dict[str, float] = {}
    start = time.perf_counter()
    sites = []
    for folder in hospital_folders(data):
        where = site_for_folder(folder)
        sites.append(Site(where.name, load_site(where, config), config))
    times["decode-s"] = time.perf_counter() - start
    run = RunFolder(run_dir)
    recorder = RunRecorder(run.path, config) if everything else None
    signer = run.signer() if everything else None
    tick = time.perf_counter()
    stats = {s.name: site_statistics(s.data, config.classes) for s in sites}
    if everything:
        run.write_json(RunFolder.DATA_CHECK, compare_sites(stats, config.classes))
    scale: list[float] = []
    if config.harmonize != "none":  # as the server's data check and the sites do
        scale = harmonize_scale(stats)
        sites = [site.harmonized(scale) for site in sites]
    times["data-check-s"] = time.perf_counter() - tick
    # export-round = best: each round is also evaluated on the validation images
    with_val = config.export_round == "best" and config.eval_split != "val"
    seed_everything(config.seed)
    model = sites[0].new_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    run_id, saving, f1 = new_run_id(), 0.0, 0.0
    for server_round in range(1, rounds + 1):
        mean = RunningMean()
        train_metrics = {}
        for site in sites:
            local = site.new_model()
            local.load_state_dict(state)
            result = site.fit(local, server_round)
            arrays = {k: v.numpy() for k, v in local.state_dict().items()}
            mean.add(arrays, result.num_examples)
            train_metrics[site.name] = {"num-examples": float(result.num_examples)}
        state = {k: torch.from_numpy(v) for k, v in mean.result().items()}
        model.load_state_dict(state)
        counts = {s.name: s.evaluate(model, config.eval_split) for s in sites}
        val = {s.name: s.evaluate(model, "val") for s in sites} if with_val else {}
        if recorder is not None and signer is not None:
            tick = time.perf_counter()
            recorder.record_train(server_round, train_metrics)
            f1 = recorder.record_evaluation(server_round, counts)["f1"]
            if val:
                recorder.record_selection(server_round, val)
            card = ModelCard.of_run(config, server_round, scale)
            if recorder.summary()["best-round"] == server_round:  # as ExportedRound
                best = run.file(RunFolder.BEST_CHECKPOINT)
                save_checkpoint(best, card, state)
            ResumePoint(
                server_round, state, run_id, config.to_run_config(), {},
                capture_rng(), recorder.elapsed,
            ).save(run, signer, card)  # fmt: skip
            saving += time.perf_counter() - tick
    if recorder is not None:
        recorder.finish()
        times["checkpoints-s"] = saving
        tick = time.perf_counter()
        finish_run(run)
        times["export-s"] = time.perf_counter() - tick
    times["total-s"] = time.perf_counter() - start
    times["f1"] = f1
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=FedwardConfig().num_server_rounds)
    parser.add_argument("--epochs", type=int, default=FedwardConfig().local_epochs)
    parser.add_argument("--everything", action="store_true")
    args = parser.parse_args()
    times = federate(
        args.data, args.run_dir, args.rounds, args.epochs, everything=args.everything
    )
    print(" ".join(f"{k}={v:.3f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
