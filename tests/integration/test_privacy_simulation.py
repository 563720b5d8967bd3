"""A differentially private federation through Flower's simulation engine."""

import json
from pathlib import Path

import pytest

from fedward.learning.ledger import PrivacyLedger
from fedward.reporting.study import write_report
from fedward.runfolder import RunFolder
from fedward.simulation.demo import write_demo
from tests.simulate import simulate

pytestmark = pytest.mark.integration


def test_a_dp_demo_completes_and_a_hospital_over_budget_is_recorded(
    tmp_path: Path,
) -> None:
    write_demo(tmp_path / "data", 3, seed=0, max_images=24)

    result = simulate(
        tmp_path / "data",
        tmp_path / "run",
        *("--set", "dp=true", "--set", "dp-target-epsilon=4.0"),
        *("--set", "site.privacy-budget=20.0"),
        *("--set", "sites.hospital-2.privacy-budget=1.0"),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    run = RunFolder(tmp_path / "run")
    summary = run.read_json(RunFolder.SUMMARY)
    privacy = summary["privacy"]
    assert set(summary["final"]["sites"]) == {"hospital-1", "hospital-2", "hospital-3"}
    assert set(privacy["sites"]) == {"hospital-1", "hospital-3"}
    for name, site in privacy["sites"].items():
        (written,) = PrivacyLedger(run.privacy_ledger(name)).entries()
        assert site["epsilon"] == written.run_epsilon <= 4.0 + 0.01
        assert site["epsilon-per-round"] == {"1": written.run_epsilon}
        assert site["delta"] == written.delta < 1 / 16
        assert site["unit"] == "image"
    (refused,) = privacy["refused"]
    assert refused["site"] == "hospital-2"  # named from the data check
    assert refused["reason"].startswith(
        "hospital hospital-2: privacy budget 1 would be exceeded (spent 0.00,"
    )
    assert not run.privacy_ledger("hospital-2").exists()
    _, markdown = write_report(run.path)
    card = markdown.read_text()
    assert "Differential privacy: on, see below." in card
    assert "| hospital-1 | image |" in card
    assert "refused: round 1, hospital-2: hospital hospital-2: privacy budget" in card
    assert "the unit is one image, not one patient" in card
    config = json.loads(run.file(RunFolder.CONFIG).read_text())
    assert config["dp"] is True
