"""Signed manifests with real keys: the consortium CA, its signing certificate."""

import json
import logging
from pathlib import Path

import pytest

from fedward.deployment.certs import (
    make_ca,
    make_server_cert,
    make_signing_cert,
    signing_paths,
)
from fedward.errors import ConfigError, SignatureError
from fedward.runfolder import RunFolder
from fedward.signing import MANIFEST_FILE, Signer, Trust, verify_folder

CARD = {"model": "seed-cnn", "classes": ["a", "b"]}


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A consortium CA with the server's TLS and model-signing certificates."""
    certs = tmp_path_factory.mktemp("certs")
    make_ca(certs)
    make_server_cert(certs, ["localhost"])
    make_signing_cert(certs)
    return certs


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA with a signing certificate of its own."""
    certs = tmp_path_factory.mktemp("other")
    make_ca(certs, "another CA")
    make_signing_cert(certs)
    return certs


def server_signer(certs: Path) -> Signer:
    return Signer.from_files(*signing_paths(certs))


def folder_with(tmp_path: Path, signer: Signer | None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "w.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "card.json").write_text('{"a": 1}\n')
    if signer is not None:
        signer.sign_folder(tmp_path, ["w.bin", "card.json"], CARD)
    return tmp_path


def test_a_consortium_signature_verifies_against_its_ca(
    consortium: Path, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, server_signer(consortium))

    manifest = verify_folder(
        folder, ["w.bin", "card.json"], Trust.from_ca_file(consortium / "ca.crt")
    )

    assert manifest is not None
    assert manifest.card == CARD
    assert "fedward model signing" in manifest.signer
    assert "fedward consortium CA" in manifest.signer


@pytest.mark.parametrize("name", ["w.bin", "card.json"])
def test_one_flipped_byte_is_refused_naming_the_file(
    consortium: Path, tmp_path: Path, name: str
) -> None:
    folder = folder_with(tmp_path, server_signer(consortium))
    data = bytearray((folder / name).read_bytes())
    data[3] ^= 0x01
    (folder / name).write_bytes(bytes(data))

    with pytest.raises(
        SignatureError, match=rf"{name} was changed after it was signed"
    ):
        verify_folder(folder, ["w.bin", "card.json"], Trust())


def test_a_changed_manifest_does_not_verify(consortium: Path, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, server_signer(consortium))
    document = json.loads((folder / MANIFEST_FILE).read_text())
    document["manifest"]["card"]["classes"] = ["b", "a"]
    (folder / MANIFEST_FILE).write_text(json.dumps(document))

    with pytest.raises(SignatureError, match="signature does not verify"):
        verify_folder(folder, ["w.bin"], Trust())


def test_unsigned_files_are_refused_unless_allowed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = folder_with(tmp_path, None)

    with pytest.raises(SignatureError, match=r"w\.bin is unsigned"):
        verify_folder(folder, ["w.bin"], Trust())
    with caplog.at_level(logging.WARNING, "fedward"):
        result = verify_folder(folder, ["w.bin"], Trust(allow_unsigned=True))

    assert result is None
    assert "unsigned" in caplog.text
    assert "--allow-unsigned" in caplog.text


def test_a_file_the_manifest_does_not_list_is_refused(
    consortium: Path, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, server_signer(consortium))
    (folder / "extra.onnx").write_bytes(b"x")

    with pytest.raises(SignatureError, match=r"extra\.onnx is not covered"):
        verify_folder(folder, ["extra.onnx"], Trust())


def test_a_signing_certificate_from_another_ca_is_refused(
    consortium: Path, stranger: Path, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, server_signer(stranger))

    with pytest.raises(SignatureError, match="which the trusted CA did not issue"):
        verify_folder(folder, ["w.bin"], Trust.from_ca_file(consortium / "ca.crt"))


def test_a_self_made_certificate_naming_the_ca_as_issuer_is_refused(
    consortium: Path, tmp_path: Path
) -> None:
    # a forger copies the consortium CA's name into its own CA
    forged = tmp_path / "forged"
    make_ca(forged, "fedward consortium CA")
    make_signing_cert(forged)
    folder = folder_with(tmp_path / "model", server_signer(forged))

    with pytest.raises(SignatureError, match="which the trusted CA did not issue"):
        verify_folder(folder, ["w.bin"], Trust.from_ca_file(consortium / "ca.crt"))


def test_the_tls_certificate_cannot_sign_models(
    consortium: Path, tmp_path: Path
) -> None:
    tls = Signer.from_files(
        consortium / "server" / "server.crt", consortium / "server" / "server.key"
    )
    folder = folder_with(tmp_path, tls)

    with pytest.raises(SignatureError, match="not a model-signing certificate"):
        verify_folder(folder, ["w.bin"], Trust.from_ca_file(consortium / "ca.crt"))


def test_a_run_local_key_is_integrity_only_and_refused_where_a_ca_is_required(
    consortium: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signer = Signer.run_local(tmp_path / "key" / "run.key")
    folder = folder_with(tmp_path / "model", signer)

    with caplog.at_level(logging.INFO, "fedward"):
        manifest = verify_folder(folder, ["w.bin"], Trust())
    with pytest.raises(SignatureError, match="run-local key, not by a certificate"):
        verify_folder(folder, ["w.bin"], Trust.from_ca_file(consortium / "ca.crt"))

    assert manifest is not None
    assert manifest.signer.startswith("run-local key")
    assert "integrity only" in caplog.text
    assert (tmp_path / "key" / "run.key").stat().st_mode & 0o777 == 0o600
    # the same key again on the next start (a resumed run)
    assert Signer.run_local(tmp_path / "key" / "run.key").fingerprint == (
        signer.fingerprint
    )


def test_pinned_keys_refuse_any_other_signer(tmp_path: Path) -> None:
    ours, theirs = Signer.ephemeral(), Signer.ephemeral()
    folder = folder_with(tmp_path, theirs)

    with pytest.raises(SignatureError, match="not by the expected key"):
        verify_folder(folder, ["w.bin"], Trust.of_signer(ours))
    assert verify_folder(folder, ["w.bin"], Trust.of_signer(theirs)) is not None


def test_a_key_that_is_not_the_certificates_is_a_config_error(
    consortium: Path, stranger: Path
) -> None:
    cert, _ = signing_paths(consortium)
    _, other_key = signing_paths(stranger)

    with pytest.raises(ConfigError, match="is not the key of"):
        Signer.from_files(cert, other_key)


def signed_run(tmp_path: Path) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir(parents=True)
    folder.checkpoint.write_bytes(bytes(range(256)) * 8)
    folder.sign(folder.signer(), CARD)
    return folder


def test_a_run_to_resume_must_carry_its_own_unchanged_signature(
    tmp_path: Path,
) -> None:
    folder = signed_run(tmp_path)

    manifest = folder.verify_own()

    assert manifest is not None
    assert manifest.files == {"model.pt": manifest.files["model.pt"]}


def test_resuming_refuses_a_tampered_checkpoint(tmp_path: Path) -> None:
    folder = signed_run(tmp_path)
    data = bytearray(folder.checkpoint.read_bytes())
    data[100] ^= 0x80
    folder.checkpoint.write_bytes(bytes(data))

    with pytest.raises(SignatureError, match=r"model\.pt was changed after"):
        folder.verify_own()


def test_resuming_refuses_a_checkpoint_re_signed_by_another_key(
    tmp_path: Path,
) -> None:
    folder = signed_run(tmp_path)
    folder.checkpoint.write_bytes(b"other weights")
    folder.sign(Signer.ephemeral(), CARD)  # a consistent manifest, a stranger's key

    with pytest.raises(SignatureError, match="not by the expected key"):
        folder.verify_own()


def test_resuming_refuses_an_unsigned_checkpoint(tmp_path: Path) -> None:
    folder = signed_run(tmp_path)
    folder.file(RunFolder.MANIFEST).unlink()

    with pytest.raises(SignatureError, match=r"model\.pt is unsigned"):
        folder.verify_own()
