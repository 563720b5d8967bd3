import json
from pathlib import Path

import pytest
import torch

from fedward.cli import main
from fedward.config import FedwardConfig
from fedward.learning.ledger import PrivacyLedger
from fedward.models import get_model
from fedward.models.checkpoint import ModelCard, save_checkpoint
from fedward.runfolder import RunFolder
from tests.conftest import WriteFolder
from tests.learning.test_ledger import entry


def site_file(tmp_path: Path, budget: float = 2.0) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(
        f'site-name = "general"\ndata-path = "{tmp_path}"\nprivacy-budget = {budget}\n'
    )
    return path


def test_hospital_privacy_prints_the_ledger_and_what_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = PrivacyLedger(tmp_path / "general-privacy-ledger.jsonl")
    ledger.append(entry("run-a", 1))
    ledger.append(entry("run-b", 1))

    code = main(["hospital", "privacy", "--config", str(site_file(tmp_path))])

    out = capsys.readouterr().out
    assert code == 0
    assert "2 rounds" in out
    assert out.count("run-a") == 1
    assert out.count("run-b") == 1
    spent = float(out.split("lifetime ε ")[1].split()[0])
    left = float(out.split("left ")[1].split()[0])
    assert spent > 0
    assert left == pytest.approx(max(2.0 - spent, 0.0), abs=1e-3)


def test_a_damaged_ledger_is_one_clear_line_and_its_own_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = PrivacyLedger(tmp_path / "general-privacy-ledger.jsonl")
    ledger.append(entry())
    ledger.head.unlink()

    code = main(["hospital", "privacy", "--config", str(site_file(tmp_path))])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 9
    assert len(err) == 1
    assert "is damaged" in err[0]


def test_audit_membership_writes_aggregate_figures_locally(
    tmp_path: Path, write_folder: WriteFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_folder("general", per_class=8)
    config = FedwardConfig(
        model="seed-cnn", image_size=32, val_fraction=0.25, test_fraction=0.25
    )
    run = RunFolder(tmp_path / "run")
    run.start(config.to_run_config())
    torch.manual_seed(0)
    model = get_model("seed-cnn", num_classes=2, image_size=32)
    save_checkpoint(run.checkpoint, ModelCard.of_run(config, 1), model.state_dict())
    out = tmp_path / "audit.json"

    args = ["--references", "0", "--allow-unsigned", "--out", str(out)]
    code = main(["audit", "membership", str(run.path), "--site", str(data), *args])

    report = json.loads(out.read_text())
    assert code == 0
    assert report["site"] == "general"
    assert (report["members"], report["non-members"]) == (8, 4)
    assert [a["attack"] for a in report["attacks"]] == ["loss"]
    assert 0.0 <= report["attacks"][0]["auc"] <= 1.0
    assert "nothing was sent" in capsys.readouterr().out
