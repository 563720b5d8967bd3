import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fedward.cli import main
from fedward.errors import ModelError, SignatureError
from fedward.inference.export import Predictor, export_model
from fedward.models import get_model
from fedward.models.checkpoint import ModelCard, save_checkpoint
from fedward.runfolder import RunFolder
from fedward.signing import Signer
from fedward.simulation.demo import write_demo

CARD = ModelCard("seed-cnn", ["normal", "opacity"], 3, 64, server_round=4)
SIGNER = Signer.ephemeral()
EXPORTED = ["model.onnx", "model.torchscript.pt", "model.safetensors", "model.json"]


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, torch.Tensor]]:
    """A signed export folder, with a signed run folder (``run/model.pt``) inside."""
    torch.manual_seed(0)
    state = get_model("seed-cnn", num_classes=2, image_size=64).state_dict()
    out = tmp_path_factory.mktemp("export")
    export_model(CARD, state, out, signer=SIGNER)
    run = RunFolder(out / "run")
    run.path.mkdir()
    save_checkpoint(run.checkpoint, CARD, state)
    run.sign(SIGNER, CARD.meta())
    return out, state


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_every_format_gives_the_same_probabilities(
    exported: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    out, state = exported
    images = torch.rand(5, 3, 64, 64)
    reference = torch.softmax(CARD.build(state)(images), 1).detach().numpy()

    results = {
        name: Predictor(out / name).probabilities(images)
        for name in ("model.onnx", "model.torchscript.pt", "model.safetensors")
    }
    results["model.pt"] = Predictor(out / "run" / "model.pt").probabilities(images)

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


@pytest.mark.parametrize("name", [*EXPORTED, "run/model.pt"])
def test_one_flipped_byte_in_any_model_file_is_refused(
    exported: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, name: str
) -> None:
    out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    flip_one_byte(copy / name)
    used = copy / name if name != "model.json" else copy / "model.onnx"

    with pytest.raises(SignatureError, match=rf"{Path(name).name} was changed after"):
        Predictor(used)


def test_predict_refuses_a_tampered_safetensors_file_naming_it(
    exported: tuple[Path, dict[str, torch.Tensor]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    flip_one_byte(copy / "model.safetensors")
    write_demo(tmp_path / "png", 1, seed=0, max_images=2)

    code = main(
        ["predict", str(copy / "model.safetensors"), str(tmp_path / "png"),
         "--out", str(tmp_path / "p.csv")]
    )  # fmt: skip

    assert code == SignatureError.exit_code
    assert f"{copy / 'model.safetensors'} was changed after" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_an_unsigned_model_needs_allow_unsigned_and_gets_a_warning(
    exported: tuple[Path, dict[str, torch.Tensor]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, _ = exported
    copy = tmp_path / "elsewhere"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("manifest.json", "run"))
    write_demo(tmp_path / "png", 1, seed=0, max_images=2)
    args = [
        "predict",
        str(copy),
        str(tmp_path / "png"),
        "--out",
        str(tmp_path / "p.csv"),
    ]

    refused = main(args)
    refusal = capsys.readouterr().err
    accepted = main([*args, "--allow-unsigned"])
    warning = capsys.readouterr().err

    assert refused == SignatureError.exit_code
    assert f"{copy / 'model.onnx'} is unsigned" in refusal
    assert accepted == 0
    assert "used anyway (--allow-unsigned)" in warning


def test_a_folder_without_a_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no model\.onnx"):
        Predictor(tmp_path)


def test_export_cli_writes_every_format(
    exported: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    out, _ = exported

    code = main(["export", str(out / "run"), "--out", str(tmp_path / "x")])

    names = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert code == 0
    assert names == [
        "manifest.json",
        "model.json",
        "model.onnx",
        "model.safetensors",
        "model.torchscript.pt",
    ]
    assert Predictor(tmp_path / "x").card == CARD


def test_export_refuses_a_tampered_checkpoint(
    exported: tuple[Path, dict[str, torch.Tensor]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, _ = exported
    shutil.copytree(out / "run", tmp_path / "run")
    flip_one_byte(tmp_path / "run" / "model.pt")

    code = main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "x")])

    assert code == SignatureError.exit_code
    assert "model.pt was changed after it was signed" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
