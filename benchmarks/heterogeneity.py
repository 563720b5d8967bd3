"""Hospitals that differ: which strategy and options, in which scenario.

For each scenario (the demo's scanner shift on 3 sites; Dirichlet(0.3) label
skew on 5; quantity skew on 10), with and without one attacker (the site with
the most training images sends its update reversed and scaled, ``sign-flip``
x20 by default), each configuration (a strategy and its options) is run for each
seed, side by side with the baselines of that scenario and seed: each hospital
alone and all data pooled, with the same budget (rounds x local epochs) on the
same held-out images. Per configuration: global F1 (mean ± sd over seeds), the
worst hospital's F1, global F1 as a fraction of pooled F1, the number of
hospitals below their local-only F1, the fall from the best round to the last,
and updates rejected (the attacker's, and honest ones).

Federations run in this process (:mod:`fedward.simulation.inprocess`: the real
ServerApp and ClientApp, messages serialised as on the wire, no Ray start-up).
Each finished run is appended to ``heterogeneity.jsonl``, so an interrupted
grid resumes where it stopped; ``--table-only`` renders the table again.

Usage::

    python -m benchmarks.heterogeneity                      # the full grid
    python -m benchmarks.heterogeneity --image-size 64 --seeds 1 \\
        --configs before,default,fedprox --scenarios scanner-shift-3

Writes ``benchmarks/results/heterogeneity.{jsonl,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fedward.config import AttackConfig, FedwardConfig
from fedward.runfolder import RunFolder
from fedward.simulation.baselines import run_baselines
from fedward.simulation.demo import ensure_demo
from fedward.simulation.inprocess import run_in_process
from fedward.simulation.runner import prepare

logger = logging.getLogger("benchmarks.heterogeneity")

SCENARIOS: dict[str, dict[str, Any]] = {
    "scanner-shift-3": {"num-hospitals": 3, "partition": "by-folder"},
    "label-skew-5": {
        "num-hospitals": 5,
        "partition": "dirichlet",
        "dirichlet-alpha": 0.3,
    },
    "quantity-skew-10": {
        "num-hospitals": 10,
        "partition": "quantity",
        "dirichlet-alpha": 0.5,
    },
}
# how many hospitals misbehave in an attacked run: one of three (or five), two
# of ten, the largest ones
ATTACKERS = {"scanner-shift-3": 1, "label-skew-5": 1, "quantity-skew-10": 2}
NO_SCREEN = {"update-norm-bound": 0.0, "update-min-cosine": -1.0}
# "before": the defaults before issue 13; "default": FedwardConfig's defaults now;
# the others change one thing from the defaults
CONFIGS: dict[str, dict[str, Any]] = {
    "before": {
        "strategy": "fedavg",
        "model": "seed-cnn",
        "harmonize": "none",
        "lr-schedule": "constant",
        "export-round": "last",
        **NO_SCREEN,
    },
    "default": {},
    "no-harmonize": {"harmonize": "none"},
    "seed-cnn": {"model": "seed-cnn"},  # the plain seed CNN, else the defaults
    "seed-cnn-no-harmonize": {"model": "seed-cnn", "harmonize": "none"},
    "seed-cnn-personalize": {"model": "seed-cnn", "personalize-epochs": 2},
    "seed-cnn-fedmedian": {"model": "seed-cnn", "strategy": "fedmedian"},
    "cosine-lr": {"lr-schedule": "cosine"},
    "direction-check": {"update-min-cosine": 0.0},
    "fedprox": {"strategy": "fedprox", "proximal-mu": 0.1},
    "fedadam": {"strategy": "fedadam", "fedopt-eta": 0.001},
    "fedyogi": {"strategy": "fedyogi", "fedopt-eta": 0.001},
    "fedadagrad": {"strategy": "fedadagrad", "fedopt-eta": 0.001},
    "fedavgm": {"strategy": "fedavgm", "server-momentum": 0.5},
    "fedmedian": {"strategy": "fedmedian"},
    "fedtrimmedavg": {"strategy": "fedtrimmedavg"},
    "krum": {"strategy": "krum"},
    "multikrum": {"strategy": "multikrum"},
    "bulyan": {"strategy": "bulyan", "num-malicious-nodes": 0},
    "fedbn": {"model": "seed-cnn-bn", "local-norm": True},
    "fedbn-personalize": {
        "model": "seed-cnn-bn",
        "local-norm": True,
        "personalize-epochs": 2,
    },
    "personalize": {"personalize-epochs": 2},
}


def demo_data(root: Path, hospitals: int, max_images: int | None) -> Path:
    """The demo for ``hospitals`` sites (data seed 42), written once."""
    from fedward.simulation.demo import write_demo

    folder = root / f"{hospitals}-hospitals-max-{max_images or 'all'}"
    if max_images is None:
        ensure_demo(folder, hospitals, 42)
    elif not (folder / "demo.json").is_file():
        write_demo(folder, hospitals, seed=42, max_images=max_images)
    return folder


def base_config(args: argparse.Namespace, scenario: str, seed: int) -> FedwardConfig:
    """The scenario's prepared config with the run-size options."""
    values = SCENARIOS[scenario]
    data = demo_data(args.data_dir, values["num-hospitals"], args.max_images)
    config = FedwardConfig.from_mapping(
        {
            **values,
            "data-root": str(data),
            "image-size": args.image_size,
            "num-server-rounds": args.rounds,
            "local-epochs": args.local_epochs,
            "seed": seed,
            "run-dir": str(args.work / scenario / f"seed-{seed}" / "baselines"),
        }
    )
    return prepare(config)


def largest_sites(baselines: dict[str, Any], n: int) -> list[str]:
    """The ``n`` hospitals with the most held-out images (so the most images)."""
    sites = baselines["local-only"]["sites"]
    ranked = sorted(sites, key=lambda s: (sites[s]["num-examples"], s), reverse=True)
    return [str(s) for s in ranked[:n]]


def attacks_of(
    label: str, sites: list[str], args: argparse.Namespace
) -> list[AttackConfig]:
    """``clean``: none; ``kind:factor`` (or ``attack``: the --attack-kind and
    --attack-factor) at each of ``sites``."""
    if label == "clean":
        return []
    kind, _, factor = (
        f"{args.attack_kind}:{args.attack_factor}" if label == "attack" else label
    ).partition(":")
    return [
        AttackConfig.from_mapping(
            {"site": site, "kind": kind, "factor": float(factor or 1.0)}
        )
        for site in sites
    ]


def run_one(
    config: FedwardConfig, attacks: list[AttackConfig], run_dir: Path
) -> dict[str, Any]:
    """One federation; the figures of its exported round."""
    config = config.replace(run_dir=str(run_dir))
    start = time.perf_counter()
    summary = run_in_process(config, attacks)
    seconds = time.perf_counter() - start
    rows = RunFolder(run_dir).read_jsonl(RunFolder.METRICS)
    exported = summary.get("exported-round", summary["rounds"])
    f1_by_round = {r["round"]: r["f1"] for r in rows if r["scope"] == "global"}
    sites = {
        r["site"]: r["f1"]
        for r in rows
        if r["scope"] == "site" and r["round"] == exported
    }
    rejected = [r["site"] for r in rows if r["scope"] == "rejected"]
    out = {
        "global-f1": f1_by_round.get(exported),
        "f1-by-round": [f1_by_round.get(r) for r in range(1, summary["rounds"] + 1)],
        "sites-f1": sites,
        "rejected": rejected,
        "seconds": round(seconds, 1),
        "exported-round": exported,
    }
    personal = summary.get("personalization")
    if personal:
        out["personalized-f1"] = {
            name: figures["personalized"]["f1"]
            for name, figures in personal["sites"].items()
        }
        out["personalized-global-f1"] = personal["global"]["personalized"]["f1"]
    return out


def load_done(path: Path) -> dict[tuple[str, ...], dict[str, Any]]:
    """Runs already in the results file, by (kind, scenario, attack, config, seed)."""
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            done[_key(row)] = row
    return done


def _key(row: dict[str, Any]) -> tuple[str, ...]:
    names = ("kind", "scenario", "attack", "config", "seed")
    key = tuple(str(row.get(k)) for k in names)
    if row["kind"] == "baselines":  # per model; older rows: the seed CNN's
        key += (str(row.get("model", "seed-cnn")),)
    return key


def baselines_of(
    base: FedwardConfig,
    key: dict[str, Any],
    done: dict[tuple[str, ...], dict[str, Any]],
    results: Path,
) -> dict[str, Any]:
    """Local-only and pooled F1 for a scenario, seed and model (computed once)."""
    found = done.get(_key(key))
    if found is not None:
        return found
    logger.warning("baselines: %s", key)
    model = str(key["model"])
    run_dir = Path(base.run_dir).with_name(f"baselines-{model}")
    figures = run_baselines(base.replace(model=model, run_dir=str(run_dir)))
    row = {
        **key,
        "pooled-f1": figures["pooled"]["global"]["f1"],
        "local-only-f1": {
            s: f["f1"] for s, f in figures["local-only"]["sites"].items()
        },
        "local-only": figures["local-only"],
    }
    _append(results, row)
    done[_key(row)] = row
    return row


def run_grid(args: argparse.Namespace) -> None:
    """Every (scenario, seed, attack, configuration) not yet in the results."""
    results = results_file(args)
    done = load_done(results)
    for scenario in args.scenarios:
        for seed in range(args.seed, args.seed + args.seeds):
            base = base_config(args, scenario, seed)
            key = {"kind": "baselines", "scenario": scenario, "seed": seed}
            plain = baselines_of(base, {**key, "model": base.model}, done, results)
            attackers = largest_sites(plain, ATTACKERS[scenario])
            for attack in args.attacks:
                attacks = attacks_of(attack, attackers, args)
                for name in args.configs:
                    key = {
                        "kind": "run",
                        "scenario": scenario,
                        "attack": attack,
                        "config": name,
                        "seed": seed,
                    }
                    if _key(key) in done:
                        continue
                    config = FedwardConfig.from_mapping(CONFIGS[name], base=base)
                    model = {"kind": "baselines", "scenario": scenario, "seed": seed}
                    baselines_of(base, {**model, "model": config.model}, done, results)
                    logger.warning("run: %s", key)
                    run_dir = args.work / scenario / f"seed-{seed}" / attack / name
                    row = {
                        **key,
                        "model": config.model,
                        "attackers": [a.site for a in attacks],
                        **run_one(config, attacks, run_dir),
                    }
                    _append(results, row)
                    done[_key(row)] = row


def results_file(args: argparse.Namespace) -> Path:
    """The results of one run size (image size, rounds, epochs, images)."""
    size = f"{args.image_size}px-{args.rounds}r-{args.local_epochs}e"
    if args.max_images:
        size += f"-max{args.max_images}"
    return Path(args.out) / f"heterogeneity-{size}.jsonl"


def _append(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _mean_sd(values: Iterable[float]) -> str:
    items = [v for v in values if v is not None]
    if not items:
        return "-"
    if len(items) == 1:
        return f"{items[0]:.3f}"
    return f"{statistics.mean(items):.3f} ± {statistics.stdev(items):.3f}"


def _attackers(row: dict[str, Any]) -> list[str]:
    if "attackers" in row:
        return list(row["attackers"])
    return [row["attacker"]] if row.get("attacker") else []  # an older row


def table(rows: list[dict[str, Any]]) -> str:
    """One Markdown table: per scenario, attack and configuration, over seeds."""
    baselines = {
        (r["scenario"], r["seed"], r.get("model", "seed-cnn")): r
        for r in rows
        if r["kind"] == "baselines"
    }
    runs = [r for r in rows if r["kind"] == "run"]
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["scenario"], r["attack"], r["config"]), []).append(r)
    lines = [
        "| scenario | attacker | configuration | seeds | global F1 | "
        "worst hospital F1 | fraction of pooled F1 | hospitals below local-only "
        "| best→last fall | rejected: attacker / honest |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (scenario, attack, config), group in sorted(groups.items()):
        fractions, below, worst, falls = [], [], [], []
        bad = honest = 0
        for r in group:
            model = r.get("model", "seed-cnn")
            base = baselines.get((scenario, r["seed"], model))
            if base is None:  # not measured for this model: the seed CNN's
                base = baselines[(scenario, r["seed"], "seed-cnn")]
            site_f1 = r.get("personalized-f1") or r["sites-f1"]
            fractions.append(r["global-f1"] / base["pooled-f1"])
            local = base["local-only-f1"]
            below.append(sum(site_f1[s] < local[s] - 1e-9 for s in site_f1))
            worst.append(min(site_f1.values()))
            curve = [v for v in r["f1-by-round"] if v is not None]
            falls.append(max(curve) - curve[-1] if curve else 0.0)
            attackers = _attackers(r)
            bad += sum(s in attackers for s in r["rejected"])
            honest += sum(s not in attackers for s in r["rejected"])
        rounds = len(group[0]["f1-by-round"])
        attacked = rounds * sum(len(_attackers(r)) for r in group)
        lines.append(
            f"| {scenario} | {attack} | {config} | {len(group)} | "
            f"{_mean_sd(r['global-f1'] for r in group)} | {_mean_sd(worst)} | "
            f"{_mean_sd(fractions)} | {statistics.mean(below):.1f} | "
            f"{_mean_sd(falls)} | {bad}/{attacked} / {honest} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--attacks", default="clean,attack")
    parser.add_argument("--attack-kind", default="sign-flip")
    parser.add_argument("--attack-factor", type=float, default=20.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42, help="first seed")
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=Path("demo-data/benchmark"))
    parser.add_argument("--work", type=Path, default=Path("runs/heterogeneity"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    for name in ("configs", "scenarios", "attacks"):
        setattr(args, name, [v for v in getattr(args, name).split(",") if v])
    unknown = [c for c in args.configs if c not in CONFIGS]
    unknown += [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown configuration or scenario: {unknown}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("fedward").setLevel(logging.ERROR)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    logger.setLevel(logging.INFO)
    if not args.table_only:
        run_grid(args)
    path = results_file(args)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    text = table(rows)
    path.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
