"""Hospital identities from the consortium's own `fedward certs` keys."""

from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, MessageType, RecordDict

from fedward.config import FedwardConfig
from fedward.deployment.certs import make_ca, make_hospital_key, make_signing_cert
from fedward.errors import SecureAggregationError
from fedward.fl.client_app import make_client_app
from fedward.fl.protocol import RecordKey
from fedward.fl.secagg.identity import Identity, PeerTrust
from tests.messages import instruction


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    make_ca(tmp_path)
    make_hospital_key(tmp_path, "st-mary")
    make_signing_cert(tmp_path)
    return tmp_path


def test_a_hospital_signs_with_its_enrolled_node_key_and_peers_know_its_name(
    certs: Path,
) -> None:
    folder = certs / "hospitals" / "st-mary"
    identity = Identity.from_files(folder / "node.key", folder / "node.crt")
    trust = PeerTrust.from_ca_file(certs / "ca.crt")

    name = trust.verify(identity.certificate_pem, identity.sign(b"keys"), b"keys")

    assert name == "st-mary"
    with pytest.raises(SecureAggregationError, match="does not verify"):
        trust.verify(identity.certificate_pem, identity.sign(b"keys"), b"other keys")


def test_the_servers_model_signing_certificate_is_no_hospital_identity(
    certs: Path,
) -> None:
    server = Identity.from_files(
        certs / "server" / "model-signing.key", certs / "server" / "model-signing.crt"
    )
    trust = PeerTrust.from_ca_file(certs / "ca.crt")

    with pytest.raises(SecureAggregationError, match="no hospital node certificate"):
        trust.verify(server.certificate_pem, server.sign(b"keys"), b"keys")


def test_a_certificate_for_another_key_is_refused(certs: Path) -> None:
    make_hospital_key(certs, "general")
    hospitals = certs / "hospitals"

    with pytest.raises(SecureAggregationError, match="another key"):
        Identity.from_files(
            hospitals / "st-mary" / "node.key", hospitals / "general" / "node.crt"
        )


def test_a_hospital_that_requires_secure_aggregation_refuses_a_plain_run(
    certs: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        f'site-name = "st-mary"\ndata-path = "{tmp_path}"\n'
        "require-secure-aggregation = true\n"
    )
    app = make_client_app(FedwardConfig())
    context = Context(1, 7, {"site-config": str(site)}, RecordDict(), {})
    query = instruction(
        RecordDict({RecordKey.CONFIG: ConfigRecord()}), 7, MessageType.QUERY
    )

    with pytest.raises(SecureAggregationError, match="st-mary requires secure"):
        app(query, context)


def test_a_key_made_outside_a_consortium_folder_has_no_node_certificate(
    tmp_path: Path,
) -> None:
    key, pub = make_hospital_key(tmp_path, "rogue")  # no CA here: not enrolled

    assert key.exists()
    assert pub.exists()
    assert not (key.parent / "node.crt").exists()
