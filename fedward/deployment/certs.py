"""A consortium's keys: a CA, the server's TLS certificate, hospital node keys.

Made with the ``cryptography`` package. Layout under one folder::

    ca.crt  ca.key                 the consortium CA (keep ca.key offline)
    server/server.crt server.key   the aggregation server's TLS certificate (SANs)
    server/model-signing.crt .key  the server's model-signing key (code signing)
    hospitals/<name>/node.key      a hospital's authentication key (OpenSSH, P-384)
    hospitals/<name>/node.pub      its public half, registered with the server
    hospitals/<name>/node.crt      the CA's certificate for that key (client auth):
                                   how peers know it in secure aggregation

Hospitals receive ``ca.crt`` (to trust the server) and keep their ``node.key``.

The model-signing key is separate from the TLS key on purpose: the TLS key
sits in the SuperLink, the process that faces the network, while the
signing key is only read by the ServerApp and the export after a run; and the
certificates' extended key usages keep the roles apart (a TLS certificate
cannot sign a model a hospital accepts, the signing certificate cannot serve
TLS). Hospitals need nothing new: they check the signer against the same
``ca.crt`` that they already trust for TLS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedward.errors import ConfigError
from fedward.fl.secagg.identity import node_certificate

CA_DAYS = 3650
SERVER_DAYS = 825
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedward consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(out: Path, common_name: str = "fedward consortium CA") -> tuple[Path, Path]:
    """Write a self-signed CA certificate and key; return their paths."""
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA384())
    )
    return (
        _write(out / "ca.crt", cert.public_bytes(serialization.Encoding.PEM)),
        _write(out / "ca.key", _pem_key(key), private=True),
    )


def _load_ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
    except FileNotFoundError:
        raise ConfigError(f"no CA in {out}: run `fedward certs init` first") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{out / 'ca.key'} is not an EC key")
    return cert, key


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _issue(
    out: Path, subject: str, extensions: list[tuple[x509.ExtensionType, bool]]
) -> tuple[bytes, bytes]:
    """A new P-384 key and its end-entity certificate from the CA, as PEM."""
    ca_cert, ca_key = _load_ca(out)
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    cert = builder.sign(ca_key, hashes.SHA384())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_server_cert(out: Path, names: list[str]) -> tuple[Path, Path]:
    """Write the server's certificate for ``names`` (DNS names or IPs), CA-signed."""
    if not names:
        raise ConfigError("the server certificate needs at least one name or address")
    cert, key = _issue(
        out,
        names[0],
        [
            (_san(names), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    folder = out / "server"
    return (
        _write(folder / "server.crt", cert),
        _write(folder / "server.key", key, private=True),
    )


def signing_paths(certs: Path) -> tuple[Path, Path]:
    """The model-signing certificate and key in a consortium's folder."""
    return (
        certs / "server" / "model-signing.crt",
        certs / "server" / "model-signing.key",
    )


def make_signing_cert(
    out: Path, name: str = "fedward model signing"
) -> tuple[Path, Path]:
    """Write the server's model-signing certificate (code signing only), CA-signed."""
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    code_signing = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
    cert, key = _issue(out, name, [(usage, True), (code_signing, False)])
    crt_path, key_path = signing_paths(out)
    return _write(crt_path, cert), _write(key_path, key, private=True)


def make_hospital_key(out: Path, name: str) -> tuple[Path, Path]:
    """Write a hospital's node key pair (OpenSSH format, P-384); return (key, pub).

    Where ``out`` holds the consortium CA, the CA also certifies the key
    (``node.crt``, needed for secure aggregation); a key made outside a
    consortium folder (a hospital's own, or a test's rogue node) has none.

    Raises
    ------
    ConfigError
        If the name is not a short lowercase identifier or already has a key.
    """
    if not NAME.match(name):
        raise ConfigError(
            f"hospital name {name!r}: use lowercase letters, digits, '.', '_' or '-'"
        )
    folder = out / "hospitals" / name
    if (folder / "node.key").exists():
        raise ConfigError(f"{name} already has a key in {folder}; remove it to renew")
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    paths = (
        _write(folder / "node.key", private, private=True),
        _write(folder / "node.pub", public + f" {name}\n".encode()),
    )
    if (out / "ca.crt").exists() and (out / "ca.key").exists():
        certify_node_key(out, name)
    return paths


def certify_node_key(out: Path, name: str) -> Path:
    """Write (or renew) ``hospitals/<name>/node.crt``: the CA certifies the node key.

    Secure aggregation peers accept a hospital's per-round keys only when signed
    by a key this CA certified, so the server cannot substitute keys.

    Raises
    ------
    ConfigError
        If the hospital has no node key or the folder has no CA.
    """
    folder = out / "hospitals" / name
    try:
        key = serialization.load_ssh_private_key(
            (folder / "node.key").read_bytes(), None
        )
    except FileNotFoundError:
        raise ConfigError(f"{name} has no node key in {folder}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{folder / 'node.key'} is not an EC key")
    ca_cert, ca_key = _load_ca(out)
    cert = node_certificate(ca_cert, ca_key, key.public_key(), name)
    return _write(folder / "node.crt", cert.public_bytes(serialization.Encoding.PEM))
