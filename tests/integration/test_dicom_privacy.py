"""A federation on DICOM with fake patient data: nothing identifying leaves a site."""

import json
from pathlib import Path

import pytest

from fedward.simulation.demo import write_demo
from fedward.simulation.demo_dicom import fake_phi
from tests.simulate import simulate

pytestmark = pytest.mark.integration

HOSPITALS, IMAGES = 2, 24


def test_simulation_on_dicom_sends_and_logs_no_phi(tmp_path: Path) -> None:
    data, audit, run = tmp_path / "data", tmp_path / "audit", tmp_path / "run"
    write_demo(data, HOSPITALS, seed=0, max_images=IMAGES, fmt="dicom")

    result = simulate(
        data,
        run,
        "--set",
        "image-size=48",
        "--verbose",
        env={"FEDWARD_AUDIT_DIR": str(audit)},
    )

    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final"]["global"]["num-examples"] > 0
    sent = [p.read_bytes() for p in sorted(audit.iterdir())]
    assert len(sent) == 3 * HOSPITALS  # data-check query, train, evaluate each
    assert any(b"hospital-1" in blob for blob in sent)  # the scan does see content
    outputs = [result.stdout.encode(), result.stderr.encode()]
    outputs += [p.read_bytes() for p in run.rglob("*") if p.is_file()]
    phi = {
        value.encode()
        for h in range(HOSPITALS)
        for i in range(IMAGES)
        for value in fake_phi(h, i).values()
    }
    phi |= {b"FAKE^PATIENT", b"FAKEID-", b"FAKEACC", b"FAKE GENERAL HOSPITAL"}
    leaks = [v for v in phi for blob in sent + outputs if v in blob]
    assert leaks == []
