"""fedward against plain PyTorch, side by side in one run.

1. Local training throughput (images/s): fedward's ``train`` loop vs a minimal
   hand-written loop on the same model, data and batch size.
2. A 3-hospital federation: ``fedward simulate`` (Flower simulation engine) vs the
   same total training and evaluation done by a plain loop with FedAvg by hand,
   in one process. Wall time and peak RSS of the whole process tree.

Usage: ``python -m benchmarks.run [--rounds N] [--out benchmarks/results]``.
Prints a Markdown table and writes ``results.json`` + ``results.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
from torch import nn

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import DecodedImages
from fedward.data.load import load_site
from fedward.learning.loops import seed_everything, train
from fedward.learning.site import Site
from fedward.simulation.demo import write_demo


def plain_epoch(
    model: nn.Module, data: DecodedImages, batch_size: int, opt: torch.optim.Optimizer
) -> int:
    """One epoch of the textbook loop: shuffle, scale, forward, backward, step."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(data))
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        images = data.images[idx].float() / 255.0
        opt.zero_grad()
        loss = loss_fn(model(images), data.labels[idx])
        loss.backward()
        opt.step()
    return len(data)


@torch.no_grad()
def plain_evaluate(model: nn.Module, data: DecodedImages, batch_size: int) -> int:
    """Count correct predictions with the textbook eval loop."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].float() / 255.0
        preds = model(images).argmax(1)
        correct += int((preds == data.labels[start : start + batch_size]).sum())
    return correct


def bench_throughput(config: FedwardConfig, site: Site, epochs: int) -> dict[str, Any]:
    """Images/s of fedward's loop vs the plain loop, without augmentation."""
    data = site.data.train
    results: dict[str, Any] = {}
    for name in ("plain", "fedward", "plain", "fedward"):  # interleaved, best of 2
        seed_everything(0)
        model = site.new_model()
        start = time.perf_counter()
        if name == "plain":
            opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
            seen = sum(
                plain_epoch(model, data, config.batch_size, opt) for _ in range(epochs)
            )
        else:
            loader = site._loader(data, training=True, seed=0)
            seen = (
                train(
                    model,
                    loader,
                    epochs=epochs,
                    learning_rate=config.learning_rate,
                    device=torch.device("cpu"),
                    num_classes=config.num_classes,
                    channels_last=config.channels_last,
                ).num_examples
                * epochs
            )
        rate = seen / (time.perf_counter() - start)
        results[name] = max(rate, results.get(name, 0.0))
    return results


class TreeRSS:
    """Peak summed RSS of a process and all its children, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            time.sleep(0.1)

    def stop(self) -> int:
        """Stop sampling; return the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak


def timed_subprocess(args: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak tree RSS of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    rss = TreeRSS(proc.pid)
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    peak = rss.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{err.decode()[-2000:]}")
    return wall, peak


def plain_federation(data_root: str, rounds: int, epochs: int) -> None:
    """The same training as the simulation, with FedAvg by hand, one process."""
    config = FedwardConfig(data_root=data_root)
    sites = [
        Site(p.name, load_site(SiteConfig(data_path=str(p)), config), config)
        for p in sorted(Path(data_root).iterdir())
        if p.is_dir()
    ]
    seed_everything(config.seed)
    global_model = sites[0].new_model()
    for _ in range(rounds):
        states, weights = [], []
        for site in sites:
            model = site.new_model()
            model.load_state_dict(global_model.state_dict())
            opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
            for _ in range(epochs):
                plain_epoch(model, site.data.train, config.batch_size, opt)
                plain_evaluate(model, site.data.val, config.batch_size)
            states.append(model.state_dict())
            weights.append(len(site.data.train))
        total = sum(weights)
        global_model.load_state_dict(
            {
                k: sum(s[k] * (w / total) for s, w in zip(states, weights, strict=True))
                for k in states[0]
            }
        )
        for site in sites:
            plain_evaluate(global_model, site.data.test, config.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=FedwardConfig().num_server_rounds)
    parser.add_argument("--epochs", type=int, default=FedwardConfig().local_epochs)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--plain-federation", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_federation:
        plain_federation(args.plain_federation, args.rounds, args.epochs)
        return

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="fedward-bench-"))
    data = work / "data"
    write_demo(data, 3, seed=FedwardConfig().seed)

    config = FedwardConfig(augment=False)
    hospital_1 = SiteConfig(data_path=str(data / "hospital-1"))
    site = Site("hospital-1", load_site(hospital_1, config), config)
    rates = bench_throughput(config, site, epochs=2)

    sim_wall, sim_rss = timed_subprocess(
        [
            sys.executable,
            "-m",
            "fedward",
            "simulate",
            "--data",
            str(data),
            "--rounds",
            str(args.rounds),
            "--local-epochs",
            str(args.epochs),
            "--run-dir",
            str(work / "run"),
        ],
        work,
    )
    plain_wall, plain_rss = timed_subprocess(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--plain-federation",
            str(data),
            "--rounds",
            str(args.rounds),
            "--epochs",
            str(args.epochs),
        ],
        Path.cwd(),
    )
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "train-images-per-s": {"plain": rates["plain"], "fedward": rates["fedward"]},
        "train-throughput-ratio": rates["fedward"] / rates["plain"],
        "simulation": {
            "hospitals": 3,
            "rounds": args.rounds,
            "local-epochs": args.epochs,
            "fedward-wall-s": sim_wall,
            "plain-wall-s": plain_wall,
            "wall-ratio": sim_wall / plain_wall,
            "fedward-peak-rss-mib": sim_rss / 2**20,
            "plain-peak-rss-mib": plain_rss / 2**20,
            "rss-ratio": sim_rss / plain_rss,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    sim = results["simulation"]
    table = "\n".join(
        [
            "| measure | plain PyTorch | fedward | ratio (fedward/plain) |",
            "|---|---:|---:|---:|",
            f"| local training, images/s (seed CNN, batch 32) | {rates['plain']:.1f} "
            f"| {rates['fedward']:.1f} | {results['train-throughput-ratio']:.2f}x |",
            f"| 3-hospital federation, {args.rounds} rounds x {args.epochs} "
            f"epochs, wall s | {plain_wall:.1f} | {sim_wall:.1f} "
            f"| {sim['wall-ratio']:.2f}x |",
            "| same run, peak RSS of the process tree, MiB "
            f"| {sim['plain-peak-rss-mib']:.0f} | {sim['fedward-peak-rss-mib']:.0f} "
            f"| {sim['rss-ratio']:.2f}x |",
        ]
    )
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    print(f"\n{results['machine']}, torch {results['torch']}; written to {args.out}")


if __name__ == "__main__":
    main()
