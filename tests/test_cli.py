import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fedward.cli import main


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedward", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bad_config_lists_every_problem_without_traceback(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text('local-epochs = "two"\nlerning-rate = 0.1\n')

    result = run_cli(
        "simulate",
        str(scenario),
        "--set",
        "batch-size=0",
        "--rounds",
        "0",
        cwd=tmp_path,
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 4, result.stderr
    assert all(line.startswith("error: config: ") for line in lines)
    assert "Traceback" not in result.stderr
    assert "'local-epochs' must be int" in result.stderr
    assert "did you mean 'learning-rate'" in result.stderr
    assert "'batch-size' = 0 is out of range" in result.stderr
    assert "'num-server-rounds' = 0 is out of range" in result.stderr


def test_missing_data_folder_is_one_clear_line(tmp_path: Path) -> None:
    result = run_cli("simulate", "--data", str(tmp_path / "nope"), cwd=tmp_path)

    assert result.returncode == 3
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: data folder does not exist")
    )
    assert "Traceback" not in result.stderr


def test_data_demo_writes_class_folders_per_hospital(tmp_path: Path) -> None:
    code = main(
        [
            "data",
            "demo",
            "--out",
            str(tmp_path / "d"),
            "--hospitals",
            "2",
            "--max-images",
            "8",
        ]
    )

    assert code == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir() if p.is_dir()) == [
        "hospital-1",
        "hospital-2",
    ]
    assert len(list((tmp_path / "d" / "hospital-2").rglob("*.png"))) == 8


def test_models_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0

    assert "seed-cnn" in capsys.readouterr().out.split()


def test_data_check_reports_sites_and_shift(tmp_path: Path) -> None:
    from fedward.simulation.demo import write_demo

    write_demo(tmp_path / "d", 3, seed=0, max_images=16)
    write_demo(tmp_path / "dcm", 1, seed=0, max_images=16, fmt="dicom")
    (tmp_path / "d" / "hospital-1" / "normal" / "bad.png").write_bytes(b"x")

    result = run_cli("data", "check", "d", "dcm/hospital-1", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "hospital-1: 16 usable images, 1 quarantined" in out
    assert "Modality: CR (16)" in out
    assert "quarantined: does not decode (1)" in out
    assert "intensity mean" in out


def test_a_commands_exit_code_is_the_process_exit_code(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('superlink = "127.0.0.1:1"\ndata-path = "x"\n')

    result = run_cli("hospital", "--config", str(site), cwd=tmp_path)

    assert result.returncode == 2  # a config error: no CA or node key named
    assert "'root-certificates' must name an existing file" in result.stderr


PHI_FIELDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "StudyDate",
    "SeriesDate",
    "ContentDate",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "StudyDescription",
    "SeriesDescription",
)


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")
def test_data_check_inventories_an_unlabelled_export(tmp_path: Path) -> None:
    import pydicom

    from fedward.data.datasets import collect
    from fedward.data.decode import Preprocess
    from fedward.data.dicom import is_dicom
    from tests.dicom_files import PYDICOM_TEST_FILES

    export = tmp_path / "export"
    export.mkdir()
    files = [p for p in sorted(PYDICOM_TEST_FILES.iterdir()) if p.is_file()]
    for path in files:
        (export / path.name).write_bytes(path.read_bytes())
    headers = [
        pydicom.dcmread(p, force=True, stop_before_pixels=True)
        for p in files
        if is_dicom(p)
    ]

    result = run_cli("data", "check", "export", "--json", cwd=tmp_path)
    text = run_cli("data", "check", "export", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    inv = json.loads(result.stdout)["unlabelled"]["export"]
    assert inv["files"] == len(files)
    assert inv["kinds"]["DICOM"] == len(headers)
    trainable = collect(
        [(p, 0) for p in sorted(export.iterdir())], export, Preprocess()
    )
    assert inv["decodable"] == len(trainable) > 0
    assert inv["quarantined"] == len(files) - len(trainable)
    modalities = Counter(str(ds.get("Modality") or "(none)") for ds in headers)
    assert inv["modality"] == dict(modalities)
    assert ["rtplan.dcm", "no pixel data"] in inv["quarantined-files"]
    assert ["MR_truncated.dcm", "undecodable: ValueError"] in inv["quarantined-files"]
    assert text.returncode == 0, text.stderr
    assert "export: 85 files" in text.stdout
    assert "quarantined: no pixel data (" in text.stdout
    assert "no labels found" in text.stdout
    phi = {str(ds.get(field) or "").strip() for ds in headers for field in PHI_FIELDS}
    phi = {value for value in phi if len(value) >= 6}  # short ones match by chance
    output = result.stdout + result.stderr + text.stdout + text.stderr
    assert len(phi) > 20
    assert [value for value in phi if value in output] == []
