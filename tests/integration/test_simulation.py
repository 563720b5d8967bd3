"""Real federations through Flower's simulation engine (Ray), as a user runs them."""

import json
from pathlib import Path

import pytest
import torch

from fedward.runfolder import RunFolder
from fedward.signing import Signer, Trust, verify_folder
from fedward.simulation.demo import write_demo
from tests.simulate import simulate

pytestmark = pytest.mark.integration


def test_two_hospitals_one_round_writes_a_complete_run_folder(tmp_path: Path) -> None:
    write_demo(tmp_path / "data", 2, seed=0, max_images=30)

    result = simulate(tmp_path / "data", tmp_path / "run")

    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 1
    assert set(summary["final"]["sites"]) == {"hospital-1", "hospital-2"}
    site_n = sum(s["num-examples"] for s in summary["final"]["sites"].values())
    assert summary["final"]["global"]["num-examples"] == site_n
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # global-val: the pooled validation figures the best round is chosen on
    assert {r["scope"] for r in rows} == {"train", "global", "site", "global-val"}
    assert json.loads((run / "config.json").read_text())["num-hospitals"] == 2
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["round"] == 1
    assert saved["classes"] == ["normal", "opacity"]
    assert (run / "metrics.png").stat().st_size > 10_000
    check = json.loads((run / "data-check.json").read_text())
    assert check["sites-answered"] == 2
    assert set(check["sites"]) == {"hospital-1", "hospital-2"}
    assert "round 1/1" in result.stderr
    assert "global (pooled counts)" in result.stdout
    # model.pt and the export are signed by the run's own key (integrity only)
    key = Signer.run_local(run / "run-signing.key")
    signed = RunFolder(run).verify(Trust.of_signer(key))
    export = verify_folder(run / "export", ["model.onnx", "model.json"], Trust())
    assert signed is not None
    assert export is not None
    assert signed.fingerprint == export.fingerprint == key.fingerprint
    assert signed.card["server_round"] == 1


def test_a_crashing_hospital_does_not_lose_the_run(tmp_path: Path) -> None:
    write_demo(tmp_path / "data", 3, seed=0, max_images=20)
    for path in (tmp_path / "data" / "hospital-3").rglob("*.png"):
        path.write_bytes(b"corrupt")  # every image of this site fails to decode

    result = simulate(tmp_path / "data", tmp_path / "run")

    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["final"]["sites"]) == {"hospital-1", "hospital-2"}


def test_a_secure_simulation_sends_only_sums_and_keeps_site_figures_at_home(
    tmp_path: Path,
) -> None:
    write_demo(tmp_path / "data", 3, seed=0, max_images=20)

    result = simulate(
        tmp_path / "data", tmp_path / "run", "--set", "secure-aggregation=true"
    )

    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 1
    assert summary["final"]["sites"] == {}
    assert set(summary["secure-aggregation"]["took-part"]) == {
        "hospital-1", "hospital-2", "hospital-3",
    }  # fmt: skip
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["scope"] for r in rows} == {
        "participation", "secure-train", "secure-evaluate", "global",
    }  # fmt: skip
    kept = [
        json.loads(line)
        for path in sorted((run / "sites").glob("*/figures.jsonl"))
        for line in path.read_text().splitlines()
    ]
    evaluated = sum(r["num-examples"] for r in kept if r["stage"] == "evaluate")
    assert summary["final"]["global"]["num-examples"] == evaluated
    assert "no per-hospital rows: secure aggregation was on" in result.stdout
