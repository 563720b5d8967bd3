"""Every strategy by name runs a 2-round federation of the real apps on tiny data."""

import json
import typing
from pathlib import Path

import pytest
import torch

from fedward.config import FedwardConfig, StrategyName
from fedward.models import get_model
from fedward.models.checkpoint import load_checkpoint
from fedward.runfolder import RunFolder
from fedward.signing import Trust
from fedward.simulation.demo import write_demo
from fedward.simulation.inprocess import run_in_process
from fedward.simulation.runner import prepare

STRATEGY_KEYS: dict[str, dict[str, object]] = {
    "bulyan": {"num-malicious-nodes": 0},  # needs 4f + 3 hospitals: f = 0 of 3
    "fedprox": {"proximal-mu": 0.1},
    "fedavgm": {"server-momentum": 0.9},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo(root, 3, seed=0, max_images=14)
    return root


def tiny(data: Path, run_dir: Path, **keys: object) -> FedwardConfig:
    config = FedwardConfig.from_mapping(
        {
            "data-root": str(data),
            "image-size": 32,
            "num-server-rounds": 2,
            "local-epochs": 1,
            "batch-size": 8,
            "run-dir": str(run_dir),
            **keys,
        }
    )
    return prepare(config)


@pytest.mark.parametrize("name", typing.get_args(StrategyName))
def test_each_strategy_runs_two_rounds(data: Path, tmp_path: Path, name: str) -> None:
    config = tiny(data, tmp_path / "run", strategy=name, **STRATEGY_KEYS.get(name, {}))

    summary = run_in_process(config)

    folder = RunFolder(config.run_dir)
    rows = folder.read_jsonl(RunFolder.METRICS)
    trained = [(r["round"], r["site"]) for r in rows if r["scope"] == "train"]
    assert summary["rounds"] == 2
    assert {r for r, _ in trained} == {1, 2}
    assert summary["final"]["global"]["num-examples"] > 0
    card, state = load_checkpoint(folder.checkpoint)
    torch.manual_seed(config.seed)
    initial = get_model(config.model, num_classes=2, image_size=32).state_dict()
    assert card.server_round == summary["exported-round"] in (1, 2)
    assert any(not torch.equal(state[k], initial[k]) for k in initial)
    assert all(state[k].dtype == initial[k].dtype for k in initial)


def test_the_best_round_on_validation_images_is_exported(
    data: Path, tmp_path: Path
) -> None:
    config = tiny(data, tmp_path / "run", **{"num-server-rounds": 3})

    summary = run_in_process(config)

    folder = RunFolder(config.run_dir)
    card, _ = load_checkpoint(folder.checkpoint)
    chosen = [
        r for r in folder.read_jsonl(RunFolder.METRICS) if r["scope"] == "global-val"
    ]
    assert config.export_round == "best"  # the default
    assert [r["round"] for r in chosen] == [1, 2, 3]
    best = max(chosen, key=lambda r: (r["f1"], -r["round"]))
    assert summary["best-chosen-on"] == "val"
    assert summary["exported-round"] == summary["best-round"] == best["round"]
    assert card.server_round == best["round"]
    assert not folder.has(RunFolder.BEST_CHECKPOINT)
    manifest = folder.verify(Trust.of_signer(folder.signer()))
    assert manifest is not None
    assert manifest.card["server_round"] == card.server_round
    saved = json.loads(folder.file(RunFolder.SUMMARY).read_text())
    assert saved["exported-round"] == card.server_round
