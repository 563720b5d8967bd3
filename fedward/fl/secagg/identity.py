"""Who a hospital is in a secure sum: its enrolled node key, certified by the CA.

A deployed hospital signs its per-round public keys with its node key, the P-384
key its SuperNode authenticates with (``node-key`` in ``site.toml``), and sends the
certificate the consortium CA issued for that key (``node-certificate``; ``fedward
certs`` writes ``node.crt`` beside ``node.key``). A peer accepts the keys only if
the certificate was issued by a CA in its own ``root-certificates`` for client
authentication to a non-CA subject, is valid now, and the signature verifies: the
server, which relays every message, cannot substitute a key, since it holds no
certified key of any hospital.

Simulated hospitals have no node keys. The nearest real thing is a run-local CA
(:class:`RunLocalCA`) in the run folder, which certifies a fresh key per simulated
hospital: the same checks run, but anyone who can read the run folder could mint
an identity, so a simulation proves that the protocol works, not who took part.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedward.errors import SecureAggregationError

ECDSA = ec.ECDSA(hashes.SHA384())
NODE_DAYS = 825


def common_name(cert: x509.Certificate) -> str:
    """The subject's CN (the hospital's enrolled name)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def node_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    name: str,
    days: int = NODE_DAYS,
) -> x509.Certificate:
    """The CA's certificate for a hospital's node key: client authentication only."""
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedward consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )


@dataclass(frozen=True)
class Identity:
    """A hospital's signing key and the CA's certificate for it."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def name(self) -> str:
        """The enrolled name (the certificate's CN)."""
        return common_name(self.certificate)

    @property
    def certificate_pem(self) -> bytes:
        """The certificate, PEM."""
        return _pem(self.certificate)

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA384 signature of ``data``."""
        return self.key.sign(data, ECDSA)

    @classmethod
    def from_files(cls, key_path: Path, cert_path: Path) -> Identity:
        """The node key (OpenSSH or PEM) and its certificate.

        Raises
        ------
        SecureAggregationError
            If a file is missing or unreadable, or the certificate is for
            another key.
        """
        try:
            data = key_path.read_bytes()
            key = (
                serialization.load_ssh_private_key(data, None)
                if data.startswith(b"-----BEGIN OPENSSH")
                else serialization.load_pem_private_key(data, None)
            )
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise SecureAggregationError(
                f"cannot read the node key or its certificate: {exc}"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SecureAggregationError("the node key is not an EC key")
        if cert.public_key() != key.public_key():
            raise SecureAggregationError(
                f"{cert_path.name} certifies another key than the node key"
            )
        return cls(key, cert)


@dataclass(frozen=True)
class PeerTrust:
    """The CA certificates a hospital accepts its peers' node certificates from."""

    roots: tuple[x509.Certificate, ...]

    @classmethod
    def from_ca_file(cls, path: Path) -> PeerTrust:
        """Trust the CA certificate(s) in a PEM file.

        Raises
        ------
        SecureAggregationError
            If the file is missing or holds no certificate.
        """
        try:
            return cls(tuple(x509.load_pem_x509_certificates(path.read_bytes())))
        except (OSError, ValueError) as exc:
            raise SecureAggregationError(f"cannot read the CA file: {exc}") from None

    def verify(self, cert_pem: bytes, signature: bytes, data: bytes) -> str:
        """Check a peer's certificate and its signature of ``data``; return its name.

        Raises
        ------
        SecureAggregationError
            If the certificate was not issued by a trusted CA for a hospital
            (client authentication, not a CA), is not valid now, or the signature
            does not verify.
        """
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise SecureAggregationError("a peer sent no valid certificate") from None
        who = f"'{common_name(cert)}'"
        if not any(_issued_by(cert, root) for root in self.roots):
            raise SecureAggregationError(f"{who} is not certified by the trusted CA")
        if not _is_node_certificate(cert):
            raise SecureAggregationError(f"{who} holds no hospital node certificate")
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise SecureAggregationError(f"{who}'s certificate is not valid now")
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise SecureAggregationError(f"{who}'s key is not an EC key")
        try:
            public.verify(signature, data, ECDSA)
        except InvalidSignature:
            raise SecureAggregationError(f"{who}'s signature does not verify") from None
        return common_name(cert)


def _issued_by(cert: x509.Certificate, root: x509.Certificate) -> bool:
    if cert.issuer != root.subject:
        return False
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_node_certificate(cert: x509.Certificate) -> bool:
    extensions = cert.extensions
    try:
        usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        basic = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage and not basic.ca


class RunLocalCA:
    """A simulation's CA and the simulated hospitals' keys, in one folder.

    Made on first use (under a file lock, as simulated hospitals may start at
    once); private keys are written with mode 0600.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def identity(self, name: str) -> Identity:
        """The simulated hospital ``name``'s key and certificate (made if needed)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ca_cert, ca_key = self._ca()
            key_path = self.folder / name / "identity.key"
            cert_path = self.folder / name / "identity.crt"
            if not key_path.is_file():
                key = ec.generate_private_key(ec.SECP384R1())
                cert = node_certificate(ca_cert, ca_key, key.public_key(), name)
                _write_private(key_path, key)
                cert_path.write_bytes(_pem(cert))
        return Identity.from_files(key_path, cert_path)

    def trust(self) -> PeerTrust:
        """Trust in this run's CA."""
        return PeerTrust.from_ca_file(self.folder / "ca.crt")

    def _ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert_path, key_path = self.folder / "ca.crt", self.folder / "ca.key"
        if cert_path.is_file() and key_path.is_file():
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise SecureAggregationError(f"{key_path} is not an EC key")
            return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
        key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "run-local CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA384())
        )
        _write_private(key_path, key)
        cert_path.write_bytes(_pem(cert))
        return cert, key


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
