from pathlib import Path

import pytest

from fedward.config import ServerConfig
from fedward.deployment.certs import make_ca, make_server_cert, make_signing_cert
from fedward.deployment.server import signing_environment
from fedward.errors import ConfigError
from fedward.signing import Signer


def test_a_consortium_without_a_signing_key_is_told_how_to_make_one(
    tmp_path: Path,
) -> None:
    make_ca(tmp_path)
    make_server_cert(tmp_path, ["localhost"])

    with pytest.raises(ConfigError, match="fedward certs signing"):
        signing_environment(ServerConfig(certs_dir=str(tmp_path)))


def test_the_server_app_signs_with_the_consortium_key_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_ca(tmp_path)
    make_signing_cert(tmp_path)
    for name, value in signing_environment(
        ServerConfig(certs_dir=str(tmp_path))
    ).items():
        monkeypatch.setenv(name, value)

    signer = Signer.for_run(tmp_path / "run" / "run-signing.key")

    assert signer.kind == "certificate"
    assert signer.certificate is not None
    assert not (tmp_path / "run" / "run-signing.key").exists()


def test_plain_text_mode_signs_with_a_run_local_key(tmp_path: Path) -> None:
    assert signing_environment(ServerConfig(insecure=True)) == {}
