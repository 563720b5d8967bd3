"""Every benchmark in one run, each as ratios measured side by side.

1. Local training throughput (images/s): fedward's ``train`` loop vs a minimal
   hand-written loop on the same model, data and batch size.
2. The demo federation (3 hospitals): ``fedward simulate`` vs the same training
   and evaluation in one process without Flower (:mod:`benchmarks.plain`: the
   same ``Site.fit``/``Site.evaluate`` calls, FedAvg by hand), and vs that
   baseline plus the data check, checkpoints and export; wall time and peak
   memory of the process tree, runs interleaved (:mod:`benchmarks.engine`).
3. Server memory to average 10 and 100 updates (:mod:`benchmarks.aggregation`).
4. Bytes per hospital per round, float32 vs float16/bfloat16
   (:mod:`benchmarks.transfer`; ``--figures`` adds the demo's figures per dtype).
5. ``--hospitals N``: N simulated hospitals, peak memory and round time
   (:mod:`benchmarks.hospitals`; long, so off by default).

Usage: ``python -m benchmarks.run [--rounds N] [--epochs N] [--repeats N]
[--figures] [--hospitals N] [--before DIR] [--out benchmarks/results]``.
Prints Markdown tables and writes ``results.json`` + ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks import aggregation, engine, hospitals, transfer
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


def throughput_table(rates: dict[str, float]) -> str:
    """Markdown: the training loops side by side."""
    return "\n".join(
        [
            "| local training, images/s (seed CNN, batch 32, no augmentation) "
            "| plain PyTorch | fedward | ratio |",
            "|---|---:|---:|---:|",
            f"| hospital-1 of the demo | {rates['plain']:.1f} | {rates['fedward']:.1f} "
            f"| {rates['fedward'] / rates['plain']:.2f}x |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=FedwardConfig().num_server_rounds)
    parser.add_argument("--epochs", type=int, default=FedwardConfig().local_epochs)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--figures", action="store_true")
    parser.add_argument("--hospitals", type=int, default=0)
    parser.add_argument("--before", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="fedward-bench-"))
    data = work / "data"
    write_demo(data, 3, seed=FedwardConfig().seed)
    config = FedwardConfig(augment=False)
    hospital_1 = SiteConfig(data_path=str(data / "hospital-1"))
    site = Site("hospital-1", load_site(hospital_1, config), config)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "load-average-at-start": os.getloadavg(),
        "train-images-per-s": bench_throughput(config, site, epochs=2),
    }
    del site
    results["federation"] = engine.measure(
        data, work, args.rounds, args.epochs,
        ("plain", "fedward", "plain-everything"), args.repeats,
    )  # fmt: skip
    results["aggregation"] = aggregation.measure([150], [10, 100])
    results["transfer"] = transfer.measure(150, args.figures)
    if args.hospitals:
        results["hospitals"] = hospitals.measure(args.hospitals, args.before)
    results["load-average-at-end"] = os.getloadavg()
    sections = [
        throughput_table(results["train-images-per-s"]),
        engine.table(results["federation"]),
        aggregation.table(results["aggregation"]),
        transfer.table(results["transfer"]),
    ]
    if args.hospitals:
        sections.append(hospitals.table(results["hospitals"]))
    text = "\n\n".join(sections)
    text += (
        f"\n\n{results['machine']}, torch {results['torch']}, load average "
        f"{results['load-average-at-start'][0]:.1f} at the start, "
        f"{results['load-average-at-end'][0]:.1f} at the end."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
