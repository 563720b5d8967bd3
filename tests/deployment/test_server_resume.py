"""``fedward server --resume``: what is checked before the SuperLink starts."""

from pathlib import Path

import pytest
import torch

from fedward.cli import main
from fedward.config import FedwardConfig, ServerConfig
from fedward.deployment.certs import make_ca, make_signing_cert
from fedward.deployment.server import check_resume, signing_environment
from fedward.errors import ConfigError, ResumeError, SignatureError
from fedward.fl.resume import ResumePoint
from fedward.models.checkpoint import ModelCard
from fedward.runfolder import RunFolder
from fedward.signing import Signer

CARD = ModelCard("seed-cnn", ["normal", "opacity"], 3, 32)


@pytest.fixture
def server_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Signer:
    """The consortium's model-signing key, as ``fedward server`` hands it on."""
    make_ca(tmp_path / "certs")
    make_signing_cert(tmp_path / "certs")
    server = ServerConfig(certs_dir=str(tmp_path / "certs"))
    for name, value in signing_environment(server).items():
        monkeypatch.setenv(name, value)
    return Signer.for_run(tmp_path / "unused.key")


def saved_run(run_dir: Path, signer: Signer, config: FedwardConfig) -> None:
    for server_round in (1, 2):
        ResumePoint(
            server_round, {"w": torch.ones(2)}, "run-7", config.to_run_config()
        ).save(RunFolder(run_dir), signer, CARD)


def test_a_run_signed_by_this_server_resumes(
    tmp_path: Path, server_key: Signer
) -> None:
    run = FedwardConfig(run_dir=str(tmp_path / "run"), num_server_rounds=4)
    saved_run(tmp_path / "run", server_key, run)

    assert check_resume(run.replace(resume=True)) == 2


def test_a_run_signed_by_another_key_is_refused(
    tmp_path: Path, server_key: Signer
) -> None:
    run = FedwardConfig(run_dir=str(tmp_path / "run"))
    saved_run(tmp_path / "run", Signer.ephemeral(), run)

    with pytest.raises(SignatureError):
        check_resume(run)


def test_other_federation_settings_are_refused(
    tmp_path: Path, server_key: Signer
) -> None:
    run = FedwardConfig(run_dir=str(tmp_path / "run"))
    saved_run(tmp_path / "run", server_key, run)

    with pytest.raises(ConfigError, match="'num-server-rounds' is 9"):
        check_resume(run.replace(num_server_rounds=9))


def test_a_folder_without_a_saved_round_is_refused(
    tmp_path: Path, server_key: Signer
) -> None:
    with pytest.raises(ResumeError, match="no complete round"):
        check_resume(FedwardConfig(run_dir=str(tmp_path / "empty")))


def test_simulate_resume_takes_no_other_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--resume", str(tmp_path), "--rounds", "3"])

    assert code == ConfigError.exit_code
    assert "drop ['num-server-rounds']" in capsys.readouterr().err


def test_server_resume_names_the_run_folder_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server_toml = tmp_path / "server.toml"
    server_toml.write_text("insecure = true\n[federation]\nnum-server-rounds = 2\n")

    code = main(["server", "--config", str(server_toml), "--resume",
                 str(tmp_path / "a"), "--run-dir", str(tmp_path / "b")])  # fmt: skip

    assert code == ConfigError.exit_code
    assert "drop --run-dir" in capsys.readouterr().err
