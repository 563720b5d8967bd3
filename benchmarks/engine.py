"""Which way to run Flower's simulation engine: wall time and memory, side by side.

Every variant runs the same federation (the demo's three hospitals by default)
in its own process tree, interleaved, and is compared with the baseline of
:mod:`benchmarks.plain` (the same training without Flower, one process):

``plain``            the baseline: decode, ``Site.fit``, FedAvg, ``Site.evaluate``
``plain-everything`` the baseline plus the data check, checkpoints, resume points
                     and the final export (what ``fedward simulate`` also does)
``fedward``          ``fedward simulate`` as shipped
``run-simulation``   Flower's deprecated ``flwr.simulation.run_simulation`` (what
                     ``fedward simulate`` used before)
``actors-2``         two Ray actors with one core each instead of one with both
``store-512``        Ray's object store capped at 512 MiB
``no-prestart``      Ray starts no idle worker ahead of the ClientApp actor
``superlink``        ``flwr run`` against a local ``flower-superlink --simulation``
                     (Flower's recommended way: SuperLink and ``flwr-simulation``
                     processes around the same engine)

Usage: ``python -m benchmarks.engine [--rounds N] [--epochs N] [--repeats N]
[--variants a,b,...]``; a variant alone: ``--variant NAME --data D --run-dir R``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.tree import Usage, run_measured
from fedward.config import FedwardConfig
from fedward.runfolder import RunFolder

VARIANTS = (
    "plain",
    "plain-everything",
    "fedward",
    "run-simulation",
    "actors-2",
    "store-512",
    "no-prestart",
    "superlink",
)


def _prepared(data: Path, run_dir: Path, rounds: int, epochs: int) -> FedwardConfig:
    from fedward.simulation import runner

    config = FedwardConfig(
        data_root=str(data),
        run_dir=str(run_dir),
        num_server_rounds=rounds,
        local_epochs=epochs,
    )
    return runner.prepare(config)


def _run_simulation_variant(config: FedwardConfig) -> None:
    """What ``fedward simulate`` did before: the deprecated entry point."""
    from flwr.simulation import run_simulation

    from fedward.fl.client_app import make_client_app
    from fedward.fl.server_app import make_server_app
    from fedward.reporting.finish import finish_run
    from fedward.simulation.engine import RaySettings

    run_simulation(
        server_app=make_server_app(config),
        client_app=make_client_app(config),
        num_supernodes=config.num_hospitals,
        backend_config=RaySettings().backend_config(),
    )
    finish_run(RunFolder(config.run_dir))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _superlink_variant(config: FedwardConfig) -> None:
    """``flwr run`` against a local SuperLink in simulation mode."""
    from fedward.deployment.bundle import app_dir
    from fedward.reporting.finish import finish_run

    home = Path(tempfile.mkdtemp(prefix="flwr-home-"))
    port = _free_port()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    run_config = home / "run-config.toml"
    run_config.write_text(
        "".join(f"{k} = {json.dumps(v)}\n" for k, v in config.to_run_config().items())
    )
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0"}
    cpus = os.cpu_count() or 1
    link = subprocess.Popen(
        ["flower-superlink", "--insecure", "--simulation", "--isolation", "subprocess",
         "--host", "127.0.0.1", "--port", str(port),
         "--disable-runtime-dependency-installation"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or link.poll() is not None:
                raise RuntimeError("the SuperLink did not start")
            time.sleep(0.1)
        federation = [
            f"num-supernodes={config.num_hospitals}",
            f"client-resources-num-cpus={cpus}",
            f"init-args-num-cpus={cpus}",
        ]
        subprocess.run(
            ["flwr", "run", str(app_dir()), "bench", "--run-config", str(run_config),
             *(a for f in federation for a in ("--federation-config", f)), "--stream"],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        folder = RunFolder(config.run_dir)
        while not folder.has(RunFolder.SUMMARY):  # the stream may end first
            if time.monotonic() > deadline + 3600:
                raise RuntimeError("the run did not finish")
            time.sleep(0.5)
        finish_run(folder)
    finally:
        link.terminate()
        link.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def run_variant(name: str, data: Path, run_dir: Path, rounds: int, epochs: int) -> None:
    """Run one variant in this process (the measuring process starts it)."""
    from fedward.console import setup_logging
    from fedward.simulation import runner
    from fedward.simulation.engine import RaySettings

    setup_logging()
    config = _prepared(data, run_dir, rounds, epochs)
    if name == "run-simulation":
        _run_simulation_variant(config)
    elif name == "superlink":
        _superlink_variant(config)
    elif name == "actors-2":
        runner.run(config, settings=RaySettings(actors=2))
    elif name == "store-512":
        runner.run(config, settings=RaySettings(object_store_mib=512))
    elif name == "no-prestart":
        os.environ["RAY_prestart_worker_first_driver"] = "0"  # noqa: SIM112 (Ray's name)
        runner.run(config)
    else:
        raise SystemExit(f"unknown variant {name}")


def command(
    name: str, data: Path, run_dir: Path, rounds: int, epochs: int
) -> list[str]:
    """The command line of one variant."""
    py = sys.executable
    where = [str(data), str(run_dir)]
    size = ["--rounds", str(rounds)]
    if name in ("plain", "plain-everything"):
        extra = ["--everything"] if name == "plain-everything" else []
        return [py, "-m", "benchmarks.plain", *where, *size, "--epochs", str(epochs),
                *extra]  # fmt: skip
    if name == "fedward":
        return [py, "-m", "fedward", "simulate", "--data", where[0], "--run-dir",
                where[1], *size, "--local-epochs", str(epochs)]  # fmt: skip
    return [py, "-m", "benchmarks.engine", "--variant", name, "--data", where[0],
            "--run-dir", where[1], *size, "--epochs", str(epochs)]  # fmt: skip


def measure(
    data: Path,
    work: Path,
    rounds: int,
    epochs: int,
    variants: tuple[str, ...] = VARIANTS,
    repeats: int = 1,
) -> dict[str, Any]:
    """Each variant ``repeats`` times, interleaved; the fastest run of each."""
    best: dict[str, dict[str, Any]] = {}
    for repeat in range(repeats):
        for name in variants:
            run_dir = work / f"{name}-{repeat}"
            usage, err = run_measured(
                command(name, data, run_dir, rounds, epochs), Path.cwd()
            )
            summary_file = run_dir / RunFolder.SUMMARY
            f1 = None
            if summary_file.is_file():
                summary = json.loads(summary_file.read_text())
                f1 = (summary["final"]["global"] or {}).get("f1")
            row = {**vars(usage), "f1": f1, "deprecated": "DEPRECATED" in err}
            print(f"{name:18s} run {repeat + 1}: {usage.wall_s:7.1f} s  "
                  f"RSS {usage.rss_mib:6.0f} MiB  PSS {usage.pss_mib:6.0f} MiB  "
                  f"f1 {f1}", flush=True)  # fmt: skip
            if name not in best or usage.wall_s < best[name]["wall_s"]:
                peak = max(usage.peak_rss, best.get(name, {}).get("peak_rss", 0))
                best[name] = {**row, "peak_rss": peak}
            else:
                best[name]["peak_rss"] = max(best[name]["peak_rss"], usage.peak_rss)
    return {"rounds": rounds, "epochs": epochs, "repeats": repeats, "variants": best}


def table(results: dict[str, Any]) -> str:
    """Markdown: each variant against the plain baseline."""
    rows = results["variants"]
    base = rows.get("plain") or next(iter(rows.values()))
    lines = [
        f"Engine options, {results['rounds']} rounds x {results['epochs']} epochs, "
        f"fastest of {results['repeats']} (ratios to `plain`):",
        "",
        "| variant | wall s | x | peak RSS MiB | x | peak PSS MiB | x | processes "
        "| F1 | DEPRECATED |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        usage = Usage(r["wall_s"], r["peak_rss"], r["peak_pss"], r["processes"])
        f1 = "" if r["f1"] is None else f"{r['f1']:.3f}"
        lines.append(
            f"| {name} | {usage.wall_s:.1f} | {usage.wall_s / base['wall_s']:.2f} "
            f"| {usage.rss_mib:.0f} | {usage.peak_rss / base['peak_rss']:.2f} "
            f"| {usage.pss_mib:.0f} | {usage.peak_pss / base['peak_pss']:.2f} "
            f"| {usage.processes} | {f1} | {'yes' if r['deprecated'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=FedwardConfig().num_server_rounds)
    parser.add_argument("--epochs", type=int, default=FedwardConfig().local_epochs)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args.variant, args.data, args.run_dir, args.rounds, args.epochs)
        return
    from fedward.simulation.demo import write_demo

    work = Path(tempfile.mkdtemp(prefix="fedward-engine-"))
    write_demo(work / "data", 3, seed=FedwardConfig().seed)
    results = measure(
        work / "data", work, args.rounds, args.epochs,
        tuple(args.variants.split(",")), args.repeats,
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (args.out / "engine.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
