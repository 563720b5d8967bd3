"""Resume points, and a ServerApp stopped mid-round continuing to the same weights."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message

from fedward.config import FedwardConfig
from fedward.errors import ConfigError, ResumeError, SignatureError
from fedward.fl.client_app import make_client_app
from fedward.fl.protocol import MetricKey, RecordKey
from fedward.fl.recorder import RunRecorder
from fedward.fl.resume import STATE_FILE, ResumePoint, capture_rng, restore_rng
from fedward.fl.server_app import run_federation
from fedward.metrics.counts import EvalCounts
from fedward.models.checkpoint import ModelCard
from fedward.runfolder import RunFolder
from fedward.signing import Signer, Trust
from fedward.simulation.demo import write_demo
from tests.loopback import ServerKilled, loopback_grid

CARD = ModelCard("seed-cnn", ["normal", "opacity"], 3, 32)


def point(server_round: int, value: float = 1.0) -> ResumePoint:
    return ResumePoint(
        server_round,
        {"w": torch.full((2, 2), value)},
        "run-1",
        FedwardConfig().to_run_config(),
        {"moment": torch.ones(3)},
    )


def counts(right: int) -> EvalCounts:
    """Ten images, ``right`` of them classified correctly."""
    labels = np.array([0, 1] * 5)
    preds = np.where(np.arange(10) < right, labels, 1 - labels)
    return EvalCounts.of_batch(np.eye(2)[preds] * 0.6 + 0.2, labels, 1.0)


def own_trust(folder: RunFolder) -> Trust:
    return Trust.of_signer(folder.signer())


def test_a_point_comes_back_as_saved_and_only_two_are_kept(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    for r in (1, 2, 3):
        point(r, float(r)).save(folder, folder.signer(), CARD)

    loaded = ResumePoint.load_latest(folder, own_trust(folder))

    assert loaded.server_round == 3
    assert torch.equal(loaded.weights["w"], torch.full((2, 2), 3.0))
    assert torch.equal(loaded.strategy["moment"], torch.ones(3))
    assert loaded.run_id == "run-1"
    kept = sorted(p.name for p in (tmp_path / RunFolder.RESUME).iterdir())
    assert kept == ["round-0002", "round-0003"]


def test_a_point_the_crash_left_half_written_is_skipped(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    point(1).save(folder, folder.signer(), CARD)
    half = folder.resume_point(2)
    half.mkdir()
    (half / STATE_FILE).write_bytes(b"cut short")  # no manifest: never completed

    assert ResumePoint.load_latest(folder, own_trust(folder)).server_round == 1


def test_the_weights_are_written_once(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)

    point(1).save(folder, folder.signer(), CARD)

    linked = folder.resume_point(1) / RunFolder.CHECKPOINT
    assert linked.stat().st_ino == folder.checkpoint.stat().st_ino
    assert folder.verify_own() is not None  # the run's own model.pt is signed too


@pytest.mark.parametrize("name", [STATE_FILE, RunFolder.CHECKPOINT])
def test_a_changed_point_is_refused_not_skipped(tmp_path: Path, name: str) -> None:
    folder = RunFolder(tmp_path)
    point(1).save(folder, folder.signer(), CARD)
    point(2).save(folder, folder.signer(), CARD)
    state = folder.resume_point(2) / name
    data = bytearray(state.read_bytes())
    data[-10] ^= 1
    state.write_bytes(bytes(data))

    with pytest.raises(SignatureError, match="round-0002"):
        ResumePoint.load_latest(folder, own_trust(folder))


def test_a_point_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    point(1).save(folder, Signer.ephemeral(), CARD)

    with pytest.raises(SignatureError):
        ResumePoint.load_latest(folder, own_trust(folder))


def test_a_new_run_in_the_same_folder_forgets_the_old_points(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    point(3).save(folder, folder.signer(), CARD)

    RunRecorder(tmp_path, FedwardConfig())  # a new run starts here

    with pytest.raises(ResumeError):
        ResumePoint.load_latest(folder, own_trust(folder))


def test_nothing_to_resume_is_a_clear_error(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)

    with pytest.raises(ResumeError, match="no complete round"):
        ResumePoint.load_latest(folder, own_trust(folder))


def test_other_settings_are_named_all_at_once() -> None:
    saved = point(1)
    changed = FedwardConfig(local_epochs=3, seed=7, round_timeout=5.0, resume=True)

    with pytest.raises(ConfigError) as info:
        saved.check_config(changed)

    assert len(info.value.problems) == 2
    assert "'local-epochs' is 3" in str(info.value)
    assert "'seed' is 7" in str(info.value)


def test_random_generators_continue_where_they_were() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)

    restore_rng(state)

    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_resumed_recorder_drops_the_interrupted_round(tmp_path: Path) -> None:
    config = FedwardConfig(num_server_rounds=3)
    first = RunRecorder(tmp_path, config)
    first.record_train(1, {"h1": {"train-loss": 0.5}})
    first.record_evaluation(1, {"h1": counts(7)})
    first.record_train(2, {"h1": {"train-loss": 0.4}})  # then the server died

    again = RunRecorder(tmp_path, config, resumed_round=1, elapsed=100.0)
    again.record_train(2, {"h1": {"train-loss": 0.3}})
    again.record_evaluation(2, {"h1": counts(8)})
    summary = again.finish()

    rows = RunFolder(tmp_path).read_jsonl(RunFolder.METRICS)
    trains = [(r["round"], r["train-loss"]) for r in rows if r["scope"] == "train"]
    assert trains == [(1, 0.5), (2, 0.3)]
    assert [r["round"] for r in RunFolder(tmp_path).read_jsonl(RunFolder.CURVES)] == [
        1,
        1,
        2,
        2,
    ]
    assert summary["rounds"] == 2
    assert summary["wall-seconds"] >= 100.0


# --- a whole ServerApp, hospitals reached through a loopback transport ---------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo(root, 3, seed=0, max_images=24)
    return root


def federation(demo: Path, run_dir: Path) -> FedwardConfig:
    return FedwardConfig(
        data_root=str(demo),
        run_dir=str(run_dir),
        image_size=32,
        batch_size=8,
        local_epochs=1,
        num_server_rounds=3,
        augment=False,
    )


def kill_in_round(server_round: int) -> Callable[[Message], None]:
    def kill(msg: Message) -> None:
        config = msg.content.get(RecordKey.CONFIG)
        if (
            msg.metadata.message_type == "train"
            and isinstance(config, ConfigRecord)
            and config.get(MetricKey.SERVER_ROUND) == server_round
        ):
            raise ServerKilled(f"killed in round {server_round}")

    return kill


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(
        run_dir / RunFolder.CHECKPOINT, weights_only=True
    )["state_dict"]
    return state


def test_a_server_stopped_mid_round_resumes_to_the_same_weights(
    demo: Path, tmp_path: Path
) -> None:
    whole = federation(demo, tmp_path / "whole")
    run_federation(loopback_grid(make_client_app(whole), 3), whole)
    broken = federation(demo, tmp_path / "broken")
    with pytest.raises(ServerKilled):
        run_federation(
            loopback_grid(make_client_app(broken), 3, kill_in_round(2)), broken
        )
    rows = (tmp_path / "broken" / RunFolder.METRICS).read_text().splitlines()
    assert {json.loads(r)["round"] for r in rows} == {1}

    resumed = broken.replace(resume=True)
    run_federation(loopback_grid(make_client_app(resumed), 3), resumed)

    a, b = weights(tmp_path / "whole"), weights(tmp_path / "broken")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a = RunFolder(tmp_path / "whole").read_jsonl(RunFolder.METRICS)
    rows_b = RunFolder(tmp_path / "broken").read_jsonl(RunFolder.METRICS)
    assert rows_a == rows_b
    summary = RunFolder(tmp_path / "broken").read_json(RunFolder.SUMMARY)
    assert summary["rounds"] == 3
    curves = RunFolder(tmp_path / "broken").read_jsonl(RunFolder.CURVES)
    assert [r["round"] for r in curves] == sorted(r["round"] for r in curves)
