"""Hospitals that differ, through Flower's simulation engine as a user runs it."""

import json
from pathlib import Path

import pytest
import torch

from fedward.runfolder import RunFolder
from fedward.simulation.demo import write_demo
from tests.simulate import simulate

pytestmark = pytest.mark.integration


def test_fedbn_harmonised_personalised_federation_survives_an_attacker(
    tmp_path: Path,
) -> None:
    write_demo(tmp_path / "data", 3, seed=0, max_images=24)

    result = simulate(
        tmp_path / "data",
        tmp_path / "run",
        "--rounds", "2",
        "--attack", "hospital-1:scale:50",
        "--set", "strategy='fedavgm'",
        "--set", "server-momentum=0.5",
        "--set", "model='seed-cnn-bn'",
        "--set", "local-norm=true",
        "--set", "harmonize='histogram'",
        "--set", "personalize-epochs=1",
        "--set", "image-size=48",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    folder = RunFolder(tmp_path / "run")
    summary = json.loads(folder.file(RunFolder.SUMMARY).read_text())
    rows = folder.read_jsonl(RunFolder.METRICS)
    rejected = [(r["round"], r["site"]) for r in rows if r["scope"] == "rejected"]
    assert rejected == [(1, "hospital-1"), (2, "hospital-1")]
    # the hospitals kept their own normalisation state in the run folder
    for site in ("hospital-1", "hospital-2", "hospital-3"):
        assert (folder.site_dir(site) / RunFolder.SITE_NORM).is_file()
        assert (folder.site_dir(site) / RunFolder.SITE_PERSONALIZED).is_file()
    # the scale the server formed from aggregates is in the model card
    check = json.loads(folder.file(RunFolder.DATA_CHECK).read_text())
    model = torch.load(folder.checkpoint, weights_only=True)
    assert model["harmonize-scale"] == check["harmonize-scale"]
    assert model["local-norm"] is True
    assert json.loads((folder.export_dir / "model.json").read_text())["local_norm"]
    personal = summary["personalization"]
    assert set(personal["sites"]) == {"hospital-1", "hospital-2", "hospital-3"}
    n = {s: personal["counts"][s]["global"]["num-examples"] for s in personal["sites"]}
    final = summary["final"]["sites"]
    assert n == {s: final[s]["num-examples"] for s in final}  # the same images
    assert "Personalised" in result.stdout
    assert json.loads(folder.file(RunFolder.ATTACKS).read_text())[0]["kind"] == "scale"
