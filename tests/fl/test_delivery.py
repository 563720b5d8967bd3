"""The signed final model: the server's delivery and the hospital's check.

Real keys, real signatures, the real ClientApp; only the transport (Flower's
Grid and Message metadata) is stood in for.
"""

import json
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, Context, Error, Message, RecordDict

from fedward.config import FedwardConfig
from fedward.deployment.certs import make_ca, make_signing_cert, signing_paths
from fedward.fl.client_app import make_client_app
from fedward.fl.delivery import deliver_final_model, signed_model_files
from fedward.fl.protocol import (
    FINAL_MODEL_MESSAGE,
    RecordKey,
    files_record,
    final_model_status,
    to_arrays,
)
from fedward.inference.export import Predictor
from fedward.models import get_model
from fedward.models.checkpoint import ModelCard
from fedward.runfolder import RunFolder
from fedward.signing import Signer, Trust
from fedward.simulation.inprocess import ClientFn, InProcessGrid
from tests.messages import instruction

CONFIG = FedwardConfig(image_size=32)
CARD = ModelCard("seed-cnn", ["normal", "opacity"], 3, 32, server_round=3)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The consortium's folder and another CA's, each with a signing certificate."""
    out = {}
    for name in ("consortium", "stranger"):
        folder = tmp_path_factory.mktemp(name)
        make_ca(folder, f"{name} CA")
        make_signing_cert(folder)
        out[name] = folder
    return out


def signer(folder: Path) -> Signer:
    return Signer.from_files(*signing_paths(folder))


def hospital(tmp_path: Path, name: str, ca: Path) -> Context:
    """A hospital's node context: its own site.toml, trusting ``ca``."""
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    site = tmp_path / f"{name}.toml"
    site.write_text(
        f'site-name = "{name}"\ndata-path = "data"\nroot-certificates = "{ca}"\n'
    )
    return Context(1, 7, {"site-config": str(site)}, RecordDict(), {})


def final_model_message(files: dict[str, bytes]) -> Message:
    content = RecordDict({RecordKey.FILES: files_record(files)})
    return instruction(content, node_id=7, message_type=FINAL_MODEL_MESSAGE)


def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return dict(get_model("seed-cnn", num_classes=2, image_size=32).state_dict())


def test_a_hospital_keeps_a_final_model_its_ca_vouches_for(
    certs: dict[str, Path], tmp_path: Path
) -> None:
    state = weights()
    files = signed_model_files(CARD, to_arrays_of(state), signer(certs["consortium"]))
    context = hospital(tmp_path, "st-mary", certs["consortium"] / "ca.crt")

    reply = make_client_app(CONFIG)(final_model_message(files), context)

    assert final_model_status(reply) == (True, "")
    kept = tmp_path / "st-mary-models" / "run-1"
    assert sorted(p.name for p in kept.iterdir()) == [
        "manifest.json",
        "model.json",
        "model.safetensors",
    ]
    # what the hospital kept is a verified model its tools load
    predictor = Predictor(kept, Trust.from_ca_file(certs["consortium"] / "ca.crt"))
    images = torch.rand(2, 3, 32, 32)
    expected = torch.softmax(CARD.build(state)(images), 1).detach().numpy()
    assert abs(predictor.probabilities(images) - expected).max() < 1e-6


def test_a_hospital_refuses_a_final_model_signed_by_another_key(
    certs: dict[str, Path], tmp_path: Path
) -> None:
    files = signed_model_files(CARD, to_arrays_of(weights()), signer(certs["stranger"]))
    context = hospital(tmp_path, "general", certs["consortium"] / "ca.crt")

    reply = make_client_app(CONFIG)(final_model_message(files), context)

    accepted, reason = final_model_status(reply)
    assert not accepted
    assert "which the trusted CA did not issue" in reason
    assert str(tmp_path) not in reason  # no path of the hospital's goes back
    assert not (tmp_path / "general-models").exists()


@pytest.mark.parametrize("name", ["model.safetensors", "model.json"])
def test_a_hospital_refuses_a_final_model_changed_on_the_way(
    certs: dict[str, Path], tmp_path: Path, name: str
) -> None:
    files = signed_model_files(
        CARD, to_arrays_of(weights()), signer(certs["consortium"])
    )
    changed = bytearray(files[name])
    changed[len(changed) // 2] ^= 0x01
    files[name] = bytes(changed)
    context = hospital(tmp_path, "st-luke", certs["consortium"] / "ca.crt")

    reply = make_client_app(CONFIG)(final_model_message(files), context)

    accepted, reason = final_model_status(reply)
    assert not accepted
    assert f"{name} was changed after it was signed" in reason
    assert not (tmp_path / "st-luke-models").exists()


def test_a_run_local_key_cannot_pass_for_the_server(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    make_ca(certs)
    local = Signer.run_local(tmp_path / "run.key")
    files = signed_model_files(CARD, to_arrays_of(weights()), local)
    context = hospital(tmp_path, "st-mary", certs / "ca.crt")

    reply = make_client_app(CONFIG)(final_model_message(files), context)

    accepted, reason = final_model_status(reply)
    assert not accepted
    assert "run-local key, not by a certificate from the trusted CA" in reason


@pytest.fixture
def server_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower's ServerApp runtime sets before the app builds messages."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def refuses(reason: str) -> ClientFn:
    """A node whose app does not run (e.g. its gate refuses it): an error reply."""

    def answer(message: Message, context: Context) -> Message:
        return Message(Error(code=0, reason=reason), reply_to=message)

    return answer


@pytest.mark.usefixtures("server_task")
def test_the_server_records_who_accepted_and_who_refused(
    certs: dict[str, Path], tmp_path: Path
) -> None:
    good, other = certs["consortium"] / "ca.crt", certs["stranger"] / "ca.crt"
    app = make_client_app(CONFIG)
    grid = InProcessGrid(
        {
            1: app,
            2: app,
            3: refuses("hospital st-luke refuses app fedward/fedward 0.1.0"),
        },
        {
            1: hospital(tmp_path / "a", "st-mary", good).node_config,
            2: hospital(tmp_path / "b", "general", other).node_config,
            3: {},
        },
    )
    folder = RunFolder(tmp_path / "run")

    deliver_final_model(
        grid,
        folder,
        CARD,
        to_arrays_of(weights()),
        signer(certs["consortium"]),
    )

    record = json.loads(folder.file(RunFolder.FINAL_MODEL).read_text())
    assert record["accepted"] == ["st-mary"]
    # an error reply (st-luke's gate refused the app) has no content: named by node
    assert record["refused"] == {
        "general": record["refused"]["general"],
        "node-3": "hospital st-luke refuses app fedward/fedward 0.1.0",
    }
    assert "which the trusted CA did not issue" in record["refused"]["general"]
    assert record["round"] == 3
    assert (tmp_path / "a" / "st-mary-models" / "run-1" / "manifest.json").is_file()


def test_no_final_model_is_sent_when_signed_by_a_run_local_key(
    tmp_path: Path,
) -> None:
    grid = InProcessGrid(
        make_client_app(CONFIG),
        {1: hospital(tmp_path, "st-mary", tmp_path / "none.crt").node_config},
    )

    result = deliver_final_model(
        grid,
        RunFolder(tmp_path / "run"),
        CARD,
        to_arrays_of(weights()),
        Signer.run_local(tmp_path / "run.key"),
    )

    assert result == {}
    assert not (tmp_path / "st-mary-models").exists()


def to_arrays_of(state: dict[str, torch.Tensor]) -> ArrayRecord:
    model = get_model("seed-cnn", num_classes=2, image_size=32)
    model.load_state_dict(state)
    return to_arrays(model)
