"""Many simulated hospitals on one machine: peak memory of the process tree, round time.

Runs ``fedward simulate --hospitals N --rounds 1`` as a new user would (the demo
data for N hospitals is written first, outside the measurement), once with a
tenth of the hospitals training (``fraction-train = 0.1``) and once with all of
them training one local epoch. With ``--before DIR`` (a checkout of an earlier
fedward, e.g. ``git worktree add /tmp/before <commit>``) the same commands run
that code too, side by side.

Usage: ``python -m benchmarks.hospitals [--hospitals 100] [--before DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.tree import Usage, run_measured
from fedward.config import FedwardConfig
from fedward.runfolder import RunFolder
from fedward.simulation.demo import demo_root, ensure_demo

CASES = {
    "a tenth training": ["--set", "fraction-train=0.1", "--local-epochs", "1"],
    "all training": ["--local-epochs", "1"],
}


def measure(
    hospitals: int, before: Path | None, before_cases: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Each case with this code (and with the code in ``before``), interleaved.

    ``before_cases`` names the cases the earlier code runs (default: all).
    """
    work = Path(tempfile.mkdtemp(prefix="fedward-hospitals-"))
    data = work / demo_root(hospitals, FedwardConfig().seed)
    ensure_demo(data, hospitals, FedwardConfig().seed)
    codes = {"now": Path.cwd(), **({"before": before} if before else {})}
    rows = []
    for case, extra in CASES.items():
        for code, root in codes.items():
            if code == "before" and before_cases and case not in before_cases:
                continue
            run_dir = work / f"{code}-{case.replace(' ', '-')}"
            env = {**os.environ, "PYTHONPATH": str(root)}
            args = [sys.executable, "-m", "fedward", "simulate", "--data", str(data),
                    "--hospitals", str(hospitals), "--run-dir", str(run_dir),
                    "--rounds", "1", *extra]  # fmt: skip
            usage, _ = run_measured(args, root, env)
            summary = RunFolder(run_dir).read_json(RunFolder.SUMMARY)
            trained = {
                r["site"]
                for r in RunFolder(run_dir).read_jsonl(RunFolder.METRICS)
                if r["scope"] == "train"
            }
            row = {
                "case": case,
                "code": code,
                **vars(usage),
                "round-s": summary["wall-seconds"],
                "trained": len(trained),
            }
            rows.append(row)
            print(row, flush=True)
    return {"hospitals": hospitals, "rows": rows}


def table(results: dict[str, Any]) -> str:
    """Markdown: peak memory and time of each case."""
    lines = [
        f"{results['hospitals']} simulated hospitals, 1 round, demo data "
        "(written beforehand):",
        "",
        "| case | code | hospitals trained | wall s | federation s "
        "| peak RSS GiB | peak PSS GiB | processes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        u = Usage(r["wall_s"], r["peak_rss"], r["peak_pss"], r["processes"])
        lines.append(
            f"| {r['case']} | {r['code']} | {r['trained']} | {u.wall_s:.0f} "
            f"| {r['round-s']:.0f} | {u.peak_rss / 2**30:.2f} "
            f"| {u.peak_pss / 2**30:.2f} | {u.processes} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hospitals", type=int, default=100)
    parser.add_argument("--before", type=Path)
    parser.add_argument(
        "--before-cases",
        default="",
        help="comma-separated cases for --before (all training with the earlier "
        "code held 10.8 GiB at 100 hospitals: mind a shared machine)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    cases = tuple(c for c in args.before_cases.split(",") if c)
    results = measure(args.hospitals, args.before, cases)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hospitals.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (args.out / "hospitals.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
