"""A real deployment on 127.0.0.1: TLS SuperLink, node authentication, hospital daemons.

Every process is the one users run: ``fedward certs``, ``fedward server`` (Flower's
SuperLink + ``flwr run``) and ``fedward hospital`` (Flower's SuperNode).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fedward.deployment.certs import make_ca, make_hospital_key
from fedward.inference.export import Predictor
from fedward.runfolder import RunFolder
from fedward.signing import Trust, verify_folder
from fedward.simulation.demo import write_demo
from tests.deploy import (
    consortium,
    other_app,
    shimmed_environment,
    site_file,
    this_app,
)
from tests.pacs import free_port

pytestmark = pytest.mark.integration
ROGUE_KEY = "hospitals/rogue/node.key"


def fedward(
    *args: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "fedward", *args], stdout=out, stderr=out, env=env
    )


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("deploy")
    port = free_port()
    # st-luke is enrolled but approved other app code: it must refuse the run;
    # all three must be connected before the first round
    server_toml = consortium(
        tmp, ["st-mary", "general", "st-luke"], f"127.0.0.1:{port}",
        num_server_rounds=2, local_epochs=1, image_size=64, min_available_nodes=3,
    )  # fmt: skip
    make_ca(tmp / "other-ca")  # a CA the server's certificate does not come from
    make_hospital_key(tmp / "unenrolled", "rogue")
    write_demo(tmp / "png", 1, seed=0, max_images=24)
    write_demo(tmp / "dcm", 2, seed=1, max_images=24, fmt="dicom")
    link, ca = f"127.0.0.1:{port}", str(tmp / "certs" / "ca.crt")
    png = str(tmp / "png" / "hospital-1")
    key = str(tmp / "certs" / "hospitals" / "{}" / "node.key")
    good = {
        "st-mary": site_file(tmp, "st-mary", source="folders", approve=False,
                             data_path=png, superlink=link,
                             root_certificates=ca, node_key=key.format("st-mary")),
        "general": site_file(tmp, "general", source="dicom", approve=False,
                             data_path=str(tmp / "dcm" / "hospital-2"),
                             labels_csv=str(tmp / "dcm" / "hospital-2" / "labels.csv"),
                             superlink=link, root_certificates=ca,
                             node_key=key.format("general")),
        "other-code": site_file(tmp, "st-luke", source="folders", approve=False,
                                data_path=png, superlink=link, root_certificates=ca,
                                node_key=key.format("st-luke")),
    }  # fmt: skip
    # each hospital reviews and approves with the real command: the good ones
    # the code installed here (what the server ships), st-luke a different bundle
    approvals = {name: ["--config", str(path), "--yes"] for name, path in good.items()}
    approvals["other-code"] += ["--fab", str(other_app(tmp))]
    reviews = {
        name: subprocess.run(
            [sys.executable, "-m", "fedward", "hospital", "approve", *args],
            capture_output=True, text=True, check=True,
        ).stdout
        for name, args in approvals.items()
    }  # fmt: skip
    once: dict[str, Any] = {"max_restarts": 1, "connect_retries": 2,
                            "source": "folders", "superlink": link,
                            "data_path": png}  # fmt: skip
    bad = {
        "unregistered": site_file(tmp, "rogue", **once, root_certificates=ca,
                                  node_key=str(tmp / "unenrolled" / ROGUE_KEY)),
        "wrong-ca": site_file(tmp, "wrong-ca", **once,
                              root_certificates=str(tmp / "other-ca" / "ca.crt"),
                              node_key=key.format("st-mary")),
        "plain-text": site_file(tmp, "plain", **once, insecure=True),
    }  # fmt: skip
    # the daemons run where Flower's commands are PATH-reordering wrappers
    shimmed, ungated = shimmed_environment(tmp)
    daemons = {
        name: fedward(
            "hospital", "--config", str(path), log=tmp / f"{name}.log", env=shimmed
        )
        for name, path in {**good, **bad}.items()
    }
    server = subprocess.run(
        [sys.executable, "-m", "fedward", "server",
         "--config", str(server_toml), "--run-dir", str(tmp / "run")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    # kept beside the daemons' logs: the ServerApp's log streams through flwr run
    (tmp / "server.log").write_text(server.stdout + server.stderr)
    codes = {}
    for name, proc in daemons.items():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        codes[name] = proc.wait(timeout=60)
    return {"tmp": tmp, "server": server, "codes": codes, "reviews": reviews,
            "ungated": ungated}  # fmt: skip


def test_two_hospitals_train_two_rounds_over_tls(federation: dict[str, object]) -> None:
    tmp = Path(str(federation["tmp"]))
    server = federation["server"]
    assert isinstance(server, subprocess.CompletedProcess)

    assert server.returncode == 0, server.stdout[-2000:] + server.stderr[-3000:]
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["rounds"] == 2
    assert set(summary["final"]["sites"]) == {"st-mary", "general"}
    assert summary["final"]["global"]["num-examples"] == sum(
        s["num-examples"] for s in summary["final"]["sites"].values()
    )
    assert (tmp / "run" / "export" / "model.onnx").is_file()
    codes = federation["codes"]
    assert isinstance(codes, dict)
    assert codes["st-mary"] == codes["general"] == 0  # stopped cleanly by SIGTERM
    # what ran at each good hospital is the bundle it approved, unpacked in its
    # own daemon folder
    for name in ("st-mary", "general"):
        unpacked = [
            p.name for p in (tmp / f"{name}-daemon" / "flwr" / "apps").iterdir()
        ]
        assert unpacked == [f"fedward.fedward.0.1.0.{this_app().sha256[:8]}"]


@pytest.mark.parametrize("daemon", ["unregistered", "wrong-ca", "plain-text"])
def test_hospitals_the_server_must_not_accept_are_refused(
    federation: dict[str, object], daemon: str
) -> None:
    tmp = Path(str(federation["tmp"]))
    codes = federation["codes"]
    assert isinstance(codes, dict)
    summary = json.loads((tmp / "run" / "summary.json").read_text())

    assert codes[daemon] != 0  # gave up after its one retry
    log = (tmp / f"{daemon}.log").read_text()
    assert "giving up" in log
    assert {"rogue", "wrong-ca", "plain"}.isdisjoint(summary["final"]["sites"])


def test_a_hospital_refuses_app_code_it_did_not_approve(
    federation: dict[str, object],
) -> None:
    tmp = Path(str(federation["tmp"]))
    reviews = federation["reviews"]
    assert isinstance(reviews, dict)
    sha = this_app().sha256
    refusal = f"hospital st-luke refuses app fedward/fedward 0.1.0 (sha256 {sha})"

    # what approve showed: the bundle differs from the code here in one file
    assert "1 file(s) differ" in reviews["other-code"]
    assert "~ fedward/fl/client_app.py" in reviews["other-code"]
    assert "compared with the fedward installed here: identical" in reviews["st-mary"]
    # the hospital logged the refusal, the server recorded it as the site's error,
    # and the code was never unpacked on the hospital's machine
    assert refusal in (tmp / "other-code.log").read_text()
    failures = json.loads((tmp / "run" / "data-check.json").read_text())["failures"]
    assert [refusal in reason for reason in failures.values()] == [True]
    assert not (tmp / "st-luke-daemon" / "flwr" / "apps").exists()
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert "st-luke" not in summary["final"]["sites"]
    # PATH-reordering wrappers around Flower's commands did not get past the gate
    assert not Path(str(federation["ungated"])).exists()


def test_the_good_hospitals_kept_the_final_model_signed_by_the_server(
    federation: dict[str, object],
) -> None:
    tmp = Path(str(federation["tmp"]))
    trust = Trust.from_ca_file(tmp / "certs" / "ca.crt")

    record = json.loads((tmp / "run" / "final-model.json").read_text())
    # st-luke's gate refuses the delivery like every task of the unapproved app
    assert record["accepted"] == ["general", "st-mary"]
    assert [("refuses app" in reason) for reason in record["refused"].values()] == [
        True
    ]
    # the round exported (export-round = best: chosen on validation images)
    exported = json.loads((tmp / "run" / "summary.json").read_text())["exported-round"]
    assert exported in (1, 2)
    for name in ("st-mary", "general"):
        kept = list((tmp / f"{name}-models").iterdir())
        assert len(kept) == 1
        assert Predictor(kept[0], trust).card.server_round == exported
    # the run folder and its export carry the consortium's model-signing signature
    run = RunFolder(tmp / "run").verify(trust)
    export = verify_folder(tmp / "run" / "export", ["model.onnx", "model.json"], trust)
    assert run is not None
    assert export is not None
    assert run.signer == export.signer
    assert "fedward model signing" in run.signer
