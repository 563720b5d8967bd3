import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from fedward.cli import main
from fedward.errors import ModelError
from fedward.inference.export import Predictor, export_model
from fedward.models import get_model
from fedward.models.checkpoint import ModelCard, save_checkpoint
from fedward.simulation.demo import write_demo

CARD = ModelCard("seed-cnn", ["normal", "opacity"], 3, 64, server_round=4)


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = get_model("seed-cnn", num_classes=2, image_size=64).state_dict()
    out = tmp_path_factory.mktemp("export")
    export_model(CARD, state, out)
    save_checkpoint(out / "model.pt", CARD, state)
    return out, state


def test_every_format_gives_the_same_probabilities(
    exported: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    out, state = exported
    images = torch.rand(5, 3, 64, 64)
    reference = torch.softmax(CARD.build(state)(images), 1).detach().numpy()

    results = {
        name: Predictor(out / name).probabilities(images)
        for name in (
            "model.onnx",
            "model.torchscript.pt",
            "model.safetensors",
            "model.pt",
        )
    }

    for name, probs in results.items():
        assert probs.shape == (5, 2), name
        assert np.abs(probs - reference).max() < 1e-4, name  # ONNX Runtime vs PyTorch
    assert Predictor(out).card == CARD


def test_predict_cli_writes_probabilities_for_png_and_dicom(
    exported: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    out, _ = exported
    write_demo(tmp_path / "png", 1, seed=0, max_images=4)
    write_demo(tmp_path / "dcm", 1, seed=0, max_images=4, fmt="dicom")
    (tmp_path / "png" / "broken.png").write_bytes(b"nope")
    csv_path = tmp_path / "pred.csv"

    code = main(
        [
            "predict",
            str(out / "model.onnx"),
            str(tmp_path / "png" / "hospital-1"),
            str(tmp_path / "dcm" / "hospital-1" / "normal"),
            str(tmp_path / "png" / "broken.png"),
            "--out",
            str(csv_path),
        ]
    )

    rows = list(csv.DictReader(csv_path.open()))
    assert code == 0
    good = [r for r in rows if not r["error"]]
    assert len(good) == 4 + sum(
        1 for _ in (tmp_path / "dcm" / "hospital-1" / "normal").glob("*.dcm")
    )
    assert all(
        abs(float(r["p_normal"]) + float(r["p_opacity"]) - 1) < 1e-5 for r in good
    )
    assert all(r["prediction"] in CARD.classes for r in good)
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1
    assert bad[0]["error"].startswith("does not decode")


def test_a_folder_without_a_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no model\.onnx"):
        Predictor(tmp_path)


def test_export_cli_writes_every_format(
    exported: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    out, _ = exported

    code = main(["export", str(out / "model.pt"), "--out", str(tmp_path / "x")])

    names = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert code == 0
    assert names == [
        "model.json",
        "model.onnx",
        "model.safetensors",
        "model.torchscript.pt",
    ]
    assert Predictor(tmp_path / "x").card == CARD
