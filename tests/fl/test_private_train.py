"""The ClientApp's private train path and the server's record of it."""

from pathlib import Path

import pytest
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from opacus.accountants import RDPAccountant

from fedward.config import FedwardConfig
from fedward.fl.client_app import make_client_app
from fedward.fl.protocol import MetricKey, RecordKey, privacy_from_reply, to_arrays
from fedward.fl.recorder import RunRecorder
from fedward.fl.strategies import FedwardFedAvg
from fedward.models.groupnorm import build_run_model
from tests.conftest import WriteFolder
from tests.messages import instruction, reply

RUN = FedwardConfig(
    image_size=32,
    batch_size=4,
    local_epochs=1,
    val_fraction=0.2,
    test_fraction=0.2,
    augment=False,
    dp=True,
    dp_noise_multiplier=1.0,
)


def hospital(tmp_path: Path, data: Path, name: str, **keys: object) -> Context:
    """A deployed hospital: its own site.toml, named in its node config."""
    lines = [f'site-name = "{name}"', f'data-path = "{data}"']
    lines += [f"{k} = {str(v).lower()}" for k, v in keys.items()]
    site_file = tmp_path / f"{name}.toml"
    site_file.write_text("\n".join(lines) + "\n")
    node_config: dict[str, bool | float | int | str] = {"site-config": str(site_file)}
    return Context(1, 7, node_config, RecordDict(), {})


def train_request(config: FedwardConfig, node: int, server_round: int = 1) -> Message:
    torch.manual_seed(0)
    content = RecordDict(
        {
            RecordKey.ARRAYS: to_arrays(build_run_model(config)),
            RecordKey.CONFIG: ConfigRecord({MetricKey.SERVER_ROUND: server_round}),
        }
    )
    return instruction(content, node_id=node, message_type=MessageType.TRAIN)


def test_a_private_reply_reports_this_runs_epsilon_as_opacus_counts_it(
    tmp_path: Path, write_folder: WriteFolder
) -> None:
    app = make_client_app(RUN)
    context = hospital(tmp_path, write_folder("general", per_class=6), "general")

    reply = app(train_request(RUN, 7), context)

    privacy = reply.content[RecordKey.PRIVACY]
    assert isinstance(privacy, ConfigRecord)
    accountant = RDPAccountant()  # 8 training images, batch 4: 2 steps at rate 1/2
    for _ in range(2):
        accountant.step(noise_multiplier=1.0, sample_rate=0.5)
    assert privacy["dp-epsilon"] == accountant.get_epsilon(delta=1 / 80)
    assert privacy["dp-delta"] == pytest.approx(1 / 80)
    assert privacy["dp-unit"] == "image"  # PNG files name no patient
    assert not any("lifetime" in k for k in privacy)  # the lifetime stays home
    assert (tmp_path / "general-privacy-ledger.jsonl").is_file()


def test_a_hospital_over_budget_refuses_and_the_server_records_it(
    tmp_path: Path, write_folder: WriteFolder
) -> None:
    app = make_client_app(RUN)
    fine = hospital(tmp_path, write_folder("general", per_class=6), "general")
    tight = hospital(
        tmp_path,
        write_folder("st-mary", per_class=6),
        "st-mary",
        **{"privacy-budget": 0.5},
    )
    recorder = RunRecorder(tmp_path / "run", RUN)
    strategy = FedwardFedAvg(recorder=recorder, class_names=RUN.classes)
    strategy.node_names[8] = "st-mary"  # learnt from the data check
    request = train_request(RUN, 7)
    strategy._sent = request.content[RecordKey.ARRAYS]  # type: ignore[assignment]

    replies = [app(request, fine), app(train_request(RUN, 8), tight)]
    arrays, _ = strategy.aggregate_train(1, replies)
    summary = recorder.finish()

    assert replies[1].has_error()
    reason = replies[1].error.reason or ""
    assert reason.startswith(
        "hospital st-mary: privacy budget 0.5 would be exceeded (spent 0.00, "
        "this round needs "
    )
    assert isinstance(arrays, ArrayRecord)  # the others' updates are aggregated
    assert summary["privacy"]["refused"] == [
        {"round": 1, "site": "st-mary", "reason": reason}
    ]
    assert set(summary["privacy"]["sites"]) == {"general"}
    assert summary["failed-updates"] == 1
    assert not (tmp_path / "st-mary-privacy-ledger.jsonl").exists()


def test_a_hospital_requiring_dp_refuses_a_run_without_it(
    tmp_path: Path, write_folder: WriteFolder
) -> None:
    plain = RUN.replace(dp=False)
    context = hospital(
        tmp_path, write_folder("general", per_class=6), "general", dp=True
    )

    reply = make_client_app(plain)(train_request(plain, 7), context)

    assert reply.has_error()
    assert "hospital general: requires differential privacy" in str(reply.error.reason)


def test_a_damaged_ledger_stops_training(
    tmp_path: Path, write_folder: WriteFolder
) -> None:
    app = make_client_app(RUN)
    context = hospital(tmp_path, write_folder("general", per_class=6), "general")
    assert not app(train_request(RUN, 7), context).has_error()
    ledger = tmp_path / "general-privacy-ledger.jsonl"
    ledger.write_text(ledger.read_text().replace('"round": 1', '"round": 0'))

    reply = app(train_request(RUN, 7, server_round=2), context)

    assert reply.has_error()
    assert "is damaged (line 1 was changed or is out of order)" in str(
        reply.error.reason
    )
    assert len(ledger.read_text().splitlines()) == 1  # nothing more was spent


def test_a_malformed_privacy_claim_is_dropped_not_recorded() -> None:
    claim = ConfigRecord(
        {
            "dp-epsilon": 2.5,
            "dp-delta": float("nan"),
            "dp-unit": "household",
            "dp-steps": 4,
            "dp-extra": "anything",
        }
    )
    msg = reply(RecordDict({RecordKey.PRIVACY: claim}), 7, MessageType.TRAIN)

    assert privacy_from_reply(msg) == {"dp-epsilon": 2.5, "dp-steps": 4}
