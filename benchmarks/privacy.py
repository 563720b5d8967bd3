"""What differential privacy costs on the demo, and what it buys, in one run.

For each ε per run at every hospital (``inf``: no DP) and each seed, the demo
federation runs through Flower's simulation engine (``fedward simulate``'s
runner); then every hospital audits the final global model on its own images
(``fedward audit membership``: loss attack, and LiRA with reference models).
Side by side: global F1 and AUROC, the worst hospital's F1, the strongest
membership attack's AUC and TPR at 1 % FPR, and ε actually spent. Separately,
DP-SGD training throughput vs non-private training on the same hospital, same
model and images, interleaved in this process.

Usage::

    python -m benchmarks.privacy [--epsilons 1 3 8 inf] [--seeds 0 1 2]
        [--rounds 5] [--image-size 150] [--references 2] [--learning-rate 0.0003]
        [--out benchmarks/results] [--name privacy]

Prints a Markdown table and writes ``<name>.json`` and ``<name>.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.discovery import hospital_folders
from fedward.data.load import load_site, site_for_folder
from fedward.inference.audit import audit_membership, eager_logits
from fedward.learning.ledger import PrivacyLedger
from fedward.learning.loops import seed_everything
from fedward.learning.privacy import resolve_policy
from fedward.learning.private_site import PrivateTraining
from fedward.learning.site import Site
from fedward.models.checkpoint import load_checkpoint
from fedward.runfolder import RunFolder
from fedward.simulation import runner
from fedward.simulation.demo import write_demo


def run_config(
    data: Path, run_dir: Path, epsilon: float, seed: int, args: argparse.Namespace
) -> FedwardConfig:
    """The demo's settings, with DP at ``epsilon`` per run (``inf``: none)."""
    private = math.isfinite(epsilon)
    config = FedwardConfig(
        data_root=str(data),
        run_dir=str(run_dir),
        seed=seed,
        image_size=args.image_size,
        num_server_rounds=args.rounds,
        dp=private,
        dp_target_epsilon=epsilon if private else 0.0,
        learning_rate=args.learning_rate,
    )
    return runner.prepare(config, scenario=f"privacy-eps{epsilon:g}-seed{seed}")


def audit(config: FedwardConfig, data: Path, references: int) -> dict[str, Any]:
    """Every hospital audits the final model; the strongest attack's figures."""
    card, state = load_checkpoint(RunFolder(config.run_dir).checkpoint)
    model = card.build(state)
    found: list[dict[str, Any]] = []
    for folder in hospital_folders(data):
        splits = load_site(site_for_folder(folder), config)
        results = audit_membership(
            eager_logits(model), card.model, splits, config, references=references
        )
        found.extend({"site": folder.name, **r.to_json()} for r in results)
    strongest = max(found, key=lambda r: r["auc"])
    return {
        "auc": strongest["auc"],
        "attack": strongest["attack"],
        "site": strongest["site"],
        "tpr": max(r["tpr-at-1pct-fpr"] for r in found),
        "all": found,
    }


def one_run(
    data: Path, out: Path, epsilon: float, seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One federation and its audit."""
    config = run_config(data, out / f"eps{epsilon:g}-seed{seed}", epsilon, seed, args)
    start = time.perf_counter()
    summary = runner.run(config)
    seconds = time.perf_counter() - start
    final = summary["final"]
    spent = [s["epsilon"] for s in summary.get("privacy", {}).get("sites", {}).values()]
    row = {
        "epsilon": epsilon,
        "seed": seed,
        "f1": final["global"]["f1"],
        "auroc": final["global"]["auroc"],
        "worst-site-f1": min(s["f1"] for s in final["sites"].values()),
        "epsilon-spent": max(spent) if spent else math.inf,
        "seconds": round(seconds, 1),
        "mia": audit(config, data, args.references),
    }
    logging.getLogger("benchmarks").info("%s", row)
    return row


def throughput(data: Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """Images/s of one hospital's local round: non-private vs DP-SGD, interleaved."""
    config = FedwardConfig(
        data_root=str(data),
        image_size=args.image_size,
        dp=True,
        dp_target_epsilon=8.0,
        class_names="normal,opacity",
    )
    folder = hospital_folders(data)[0]
    site = Site(folder.name, load_site(site_for_folder(folder), config), config)
    plain = Site(site.name, site.data, config.replace(dp=False))
    settings = SiteConfig(site_name=site.name, data_path=str(folder))
    policy = resolve_policy(settings, config)
    assert policy is not None
    best: dict[str, float] = {"non-private": 0.0, "dp-sgd": 0.0}
    for attempt in range(2):
        seed_everything(attempt)
        start = time.perf_counter()
        plain.fit(plain.new_model(), 1)
        seen = len(site.data.train) * config.local_epochs
        best["non-private"] = max(
            best["non-private"], seen / (time.perf_counter() - start)
        )
        ledger = PrivacyLedger(out / f"throughput-{attempt}.jsonl")
        start = time.perf_counter()
        PrivateTraining(policy, ledger).fit(site, site.new_model(), 1, "bench")
        best["dp-sgd"] = max(best["dp-sgd"], seen / (time.perf_counter() - start))
    best["ratio"] = best["dp-sgd"] / best["non-private"]
    return best


def done_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runs an earlier, interrupted benchmark with the same name finished."""
    path = args.out / f"{args.name}.jsonl"
    if not args.resume or not path.is_file():
        path.unlink(missing_ok=True)
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    wanted = {(e, s) for e in args.epsilons for s in args.seeds}
    return [r for r in rows if (r["epsilon"], r["seed"]) in wanted]


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Mean ± sd over seeds per ε."""
    lines = [
        "| ε per run | seeds | global F1 | global AUROC | worst-hospital F1 | "
        "MIA AUC (strongest) | MIA TPR@1%FPR | ε spent (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    for eps in sorted({r["epsilon"] for r in rows}):
        group = [r for r in rows if r["epsilon"] == eps]
        spent = max(r["epsilon-spent"] for r in group)
        lines.append(
            f"| {eps:g} | {len(group)} | {cell([r['f1'] for r in group])} | "
            f"{cell([r['auroc'] for r in group])} | "
            f"{cell([r['worst-site-f1'] for r in group])} | "
            f"{cell([r['mia']['auc'] for r in group])} | "
            f"{cell([r['mia']['tpr'] for r in group])} | "
            f"{spent:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--epsilons", type=float, nargs="+", default=[1, 3, 8, math.inf]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--references", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=0.0003)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="privacy", help="file names in --out")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs <name>.jsonl holds"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedward-privacy-") as tmp:
        work = Path(tmp)
        write_demo(work / "data", 3, seed=0)
        speed = throughput(work / "data", args, work)
        rows = done_runs(args)  # finished runs of an interrupted benchmark
        for eps in args.epsilons:
            for seed in args.seeds:
                if any(r["epsilon"] == eps and r["seed"] == seed for r in rows):
                    continue
                rows.append(one_run(work / "data", work, eps, seed, args))
                with (args.out / f"{args.name}.jsonl").open("a") as fh:
                    fh.write(json.dumps(rows[-1]) + "\n")
    lines = table(rows)
    lines.append("")
    lines.append(
        f"Local training, hospital-1, {args.image_size} px: non-private "
        f"{speed['non-private']:.1f} images/s, DP-SGD {speed['dp-sgd']:.1f} images/s "
        f"(ratio {speed['ratio']:.2f}, best of 2 interleaved)."
    )
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "runs": rows,
        "throughput": speed,
    }
    (args.out / f"{args.name}.json").write_text(
        json.dumps(result, indent=2, default=str) + "\n"
    )
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
