"""Signed manifests: the SHA-256 of each model file and its model card, signed.

Every checkpoint and export folder holds ``manifest.json`` beside the files it
covers::

    {"manifest": {"format": ..., "created": ..., "card": {...},
                  "files": {"model.pt": "<sha256 hex>", ...},
                  "signer": {"kind": ..., "certificate" | "public-key": PEM}},
     "algorithm": "ecdsa-sha384", "signature": "<base64 DER>"}

The signature (ECDSA with SHA-384, as the consortium CA) covers the whole
``manifest`` object in canonical JSON (sorted keys, no spaces), signer included.

Three kinds of signer:

``certificate``
    The aggregation server's model-signing key, whose certificate the consortium
    CA issued for code signing (``fedward certs init``). Whoever trusts the CA
    (a hospital's ``root-certificates``) can check who signed.
``run-local``
    A key made for one simulation run and kept in its run folder. It proves the
    files are unchanged since the run signed them; not who made them, since
    anyone who can write the run folder can sign with it.
``local``
    A one-off key (``fedward export`` without a signing certificate): the same
    integrity check for a copied folder, and no more.

Checks (:class:`Trust`): every named file must be listed with its digest; with
CA certificates given, the signer must hold a code-signing certificate issued by
one of them; with pinned keys (resume), the signer must be one of them. A
folder without ``manifest.json`` is refused unless unsigned files are allowed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedward.errors import ConfigError, SignatureError

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
FORMAT = "fedward-manifest/1"
ALGORITHM = "ecdsa-sha384"
SIGNING_CERT_ENV = "FEDWARD_SIGNING_CERT"
SIGNING_KEY_ENV = "FEDWARD_SIGNING_KEY"
_ECDSA = ec.ECDSA(hashes.SHA384())


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, hex."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 of bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _public_pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of a public key's DER SubjectPublicKeyInfo, hex."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def common_name(name: x509.Name) -> str:
    """The CN of a certificate name (its full text when it has none)."""
    cns = name.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except FileNotFoundError:
        raise ConfigError(f"signing key not found: {path}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an EC key (fedward signs with ECDSA)")
    return key


@dataclass(frozen=True)
class Signer:
    """A private key that signs manifests, with its certificate if it has one."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate | None = None
    kind: str = "local"

    @classmethod
    def from_files(cls, certificate: Path, key: Path) -> Signer:
        """The consortium server's model-signing certificate and key.

        Raises
        ------
        ConfigError
            If a file is missing or unreadable, or they do not belong together.
        """
        try:
            cert = x509.load_pem_x509_certificate(certificate.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"signing certificate not found: {certificate}") from None
        except ValueError as exc:
            raise ConfigError(f"{certificate} is not a PEM certificate: {exc}") from exc
        private = _load_key(key)
        if cert.public_key() != private.public_key():
            raise ConfigError(f"{key} is not the key of {certificate}")
        return cls(private, cert, "certificate")

    @classmethod
    def run_local(cls, path: Path) -> Signer:
        """The run's own key at ``path``, made (mode 0600) on first use."""
        if path.is_file():
            return cls(_load_key(path), None, "run-local")
        key = ec.generate_private_key(ec.SECP384R1())
        _write_private(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return cls(key, None, "run-local")

    @classmethod
    def ephemeral(cls) -> Signer:
        """A one-off key, forgotten after use."""
        return cls(ec.generate_private_key(ec.SECP384R1()), None, "local")

    @classmethod
    def for_run(cls, run_key: Path) -> Signer:
        """The server's certificate key when the environment names one, else a run key.

        ``fedward server`` sets ``FEDWARD_SIGNING_CERT`` and ``FEDWARD_SIGNING_KEY``
        for its SuperLink and so for the ServerApp; a simulation sets neither and
        signs with the run-local key at ``run_key``.
        """
        cert, key = os.environ.get(SIGNING_CERT_ENV), os.environ.get(SIGNING_KEY_ENV)
        if cert and key:
            return cls.from_files(Path(cert), Path(key))
        return cls.run_local(run_key)

    @property
    def fingerprint(self) -> str:
        """The public key's fingerprint (:func:`key_fingerprint`)."""
        return key_fingerprint(self.key.public_key())

    def _signer_entry(self) -> dict[str, str]:
        if self.certificate is not None:
            pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode()
            return {"kind": self.kind, "certificate": pem}
        return {"kind": self.kind, "public-key": _public_pem(self.key.public_key())}

    def sign(self, digests: Mapping[str, str], card: Mapping[str, Any]) -> bytes:
        """The ``manifest.json`` bytes for files with these SHA-256 digests."""
        manifest = {
            "format": FORMAT,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "card": dict(card),
            "files": dict(sorted(digests.items())),
            "signer": self._signer_entry(),
        }
        signature = self.key.sign(_canonical(manifest), _ECDSA)
        document = {
            "manifest": manifest,
            "algorithm": ALGORITHM,
            "signature": base64.b64encode(signature).decode(),
        }
        return (json.dumps(document, indent=2) + "\n").encode()

    def sign_folder(
        self,
        folder: Path,
        names: Iterable[str],
        card: Mapping[str, Any],
        known: Mapping[str, str] | None = None,
    ) -> Path:
        """Write ``manifest.json`` (atomically) covering the named files of a folder.

        ``known`` holds SHA-256 digests already computed for some of the files.
        """
        known = known or {}
        digests = {n: known.get(n) or sha256_file(folder / n) for n in names}
        target = folder / MANIFEST_FILE
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(self.sign(digests, card))
        os.replace(tmp, target)
        return target


@dataclass(frozen=True)
class Trust:
    """What a verifier accepts.

    Parameters
    ----------
    roots
        CA certificates: when given, only a code-signing certificate issued by
        one of them may sign.
    keys
        Pinned signer key fingerprints: when given, only these keys may sign.
    allow_unsigned
        Accept a folder without ``manifest.json``, with a warning.
    """

    roots: tuple[x509.Certificate, ...] = ()
    keys: frozenset[str] = field(default_factory=frozenset)
    allow_unsigned: bool = False

    @classmethod
    def from_ca_file(cls, path: Path | None, *, allow_unsigned: bool = False) -> Trust:
        """Trust the CA certificate(s) in a PEM file (none when ``path`` is None).

        Raises
        ------
        ConfigError
            If the file is missing or holds no certificate.
        """
        if path is None:
            return cls(allow_unsigned=allow_unsigned)
        try:
            roots = x509.load_pem_x509_certificates(path.read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"CA certificate not found: {path}") from None
        except ValueError as exc:
            raise ConfigError(f"{path} holds no PEM certificate: {exc}") from None
        return cls(tuple(roots), allow_unsigned=allow_unsigned)

    @classmethod
    def of_signer(cls, signer: Signer) -> Trust:
        """Accept only manifests this signer made (a server resuming its own run)."""
        return cls(keys=frozenset({signer.fingerprint}))


@dataclass(frozen=True)
class Manifest:
    """A verified manifest."""

    files: dict[str, str]
    card: dict[str, Any]
    created: str
    signer: str  # who signed, in words
    fingerprint: str

    def check(self, digests: Mapping[str, str], where: str) -> None:
        """Compare files' digests with the signed ones.

        Raises
        ------
        SignatureError
            Naming every file that is not listed or whose digest differs.
        """
        problems = []
        for name, digest in sorted(digests.items()):
            if name not in self.files:
                problems.append(f"{where}/{name} is not covered by the signed manifest")
            elif self.files[name] != digest:
                problems.append(
                    f"{where}/{name} was changed after it was signed "
                    "(its SHA-256 differs from the signed manifest)"
                )
        if problems:
            raise SignatureError(problems)


def read_manifest(data: bytes, trust: Trust, where: str) -> Manifest:
    """Parse ``manifest.json`` bytes, check the signature and the signer.

    Raises
    ------
    SignatureError
        If the manifest is malformed, its signature does not verify, or its
        signer is not one ``trust`` accepts.
    """
    try:
        document = json.loads(data)
        manifest = document["manifest"]
        signature = base64.b64decode(document["signature"], validate=True)
        entry = manifest["signer"]
        public, described = _signer_key(entry, trust, manifest["created"], where)
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"{where} is not a valid signed manifest ({exc})") from exc
    if manifest.get("format") != FORMAT or document.get("algorithm") != ALGORITHM:
        raise SignatureError(f"{where}: unknown manifest format or algorithm")
    try:
        public.verify(signature, _canonical(manifest), _ECDSA)
    except InvalidSignature:
        raise SignatureError(
            f"{where}: the signature does not verify (the manifest was changed "
            "after it was signed)"
        ) from None
    fingerprint = key_fingerprint(public)
    if trust.keys and fingerprint not in trust.keys:
        raise SignatureError(f"{where}: signed by {described}, not by the expected key")
    return Manifest(
        {str(k): str(v) for k, v in manifest["files"].items()},
        dict(manifest["card"]),
        str(manifest["created"]),
        described,
        fingerprint,
    )


def _signer_key(
    entry: Mapping[str, str], trust: Trust, created: str, where: str
) -> tuple[ec.EllipticCurvePublicKey, str]:
    """The signer's public key and who it is, after checking it against ``trust``."""
    public: object
    if entry["kind"] == "certificate":
        cert = x509.load_pem_x509_certificate(entry["certificate"].encode())
        public = cert.public_key()
        described = (
            f"certificate '{common_name(cert.subject)}' "
            f"(issued by '{common_name(cert.issuer)}')"
        )
        if trust.roots:
            _check_chain(cert, trust.roots, created, f"{where}: signed by {described}")
    elif trust.roots:
        raise SignatureError(
            f"{where}: signed by a {entry['kind']} key, not by a certificate from "
            "the trusted CA"
        )
    else:
        public = serialization.load_pem_public_key(entry["public-key"].encode())
        described = f"{entry['kind']} key"
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise SignatureError(f"{where}: the signer's key is not an EC key")
    if entry["kind"] != "certificate":
        described += f" {key_fingerprint(public)[:16]}"
    return public, described


def _check_chain(
    cert: x509.Certificate,
    roots: Iterable[x509.Certificate],
    created: str,
    signed_by: str,
) -> None:
    """The certificate was issued by a root, for code signing, valid when signing."""
    for root in roots:
        if root.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        break
    else:
        raise SignatureError(f"{signed_by}, which the trusted CA did not issue")
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
        raise SignatureError(f"{signed_by}, not a model-signing certificate")
    when = dt.datetime.fromisoformat(created)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise SignatureError(f"{signed_by}, not valid when it signed ({created})")


def verify_folder(folder: Path, names: Iterable[str], trust: Trust) -> Manifest | None:
    """Check the named files of a folder against its signed ``manifest.json``.

    Returns the manifest, or ``None`` for an unsigned folder that ``trust``
    allows (logged as a warning). A certificate signer not checked against a CA
    is logged as a warning too; a run-local or local key at INFO.

    Raises
    ------
    SignatureError
        If the folder is unsigned (and that is not allowed), the manifest or its
        signer is refused, or a file is missing, unlisted or changed.
    """
    names = list(names)
    path = folder / MANIFEST_FILE
    listed = ", ".join(names)
    if not path.is_file():
        if trust.allow_unsigned:
            logger.warning(
                "%s: unsigned (no %s); used anyway (--allow-unsigned)",
                ", ".join(str(folder / n) for n in names),
                MANIFEST_FILE,
            )
            return None
        raise SignatureError(
            f"{folder / names[0]} is unsigned: no {MANIFEST_FILE} beside it "
            "(--allow-unsigned accepts a model from elsewhere)"
        )
    manifest = read_manifest(path.read_bytes(), trust, str(path))
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise SignatureError([f"{folder / n} is missing" for n in missing])
    manifest.check({n: sha256_file(folder / n) for n in names}, str(folder))
    if trust.roots or trust.keys:
        logger.info("%s in %s: signed by %s", listed, folder, manifest.signer)
    elif manifest.signer.startswith("certificate"):
        logger.warning(
            "%s in %s: signed by %s, not checked against a CA (give --ca)",
            listed, folder, manifest.signer,
        )  # fmt: skip
    else:
        logger.info(
            "%s in %s: unchanged since signed by a %s (integrity only: that key "
            "does not say who made the model)", listed, folder, manifest.signer,
        )  # fmt: skip
    return manifest
