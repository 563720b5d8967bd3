"""PACS source over DICOMweb: search with QIDO-RS, retrieve with WADO-RS.

Instances are stored once in the site's state folder (``dicomweb/<uid>.dcm``) and
then read like a DICOM folder with a labels CSV (keyed by SOP, series or study
instance UID). Credentials come from the site's own config; transient failures
(connection errors, HTTP 429 and 5xx) are retried with exponential back-off.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import SiteSplits, collect
from fedward.data.decode import DecodeCache, Preprocess
from fedward.data.sources.dicom import read_labels
from fedward.data.sources.registry import register_source
from fedward.data.splits import split_for_run
from fedward.errors import DataError

logger = logging.getLogger(__name__)

TAGS = {
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018",
}
PAGE = 500
DICOM_PARTS = 'multipart/related; type="application/dicom"'


@dataclass(frozen=True)
class Instance:
    """The three UIDs that address one instance."""

    study: str
    series: str
    sop: str

    def get(self, keyword: str) -> str:
        """The UID named by a DICOM keyword."""
        return {
            "StudyInstanceUID": self.study,
            "SeriesInstanceUID": self.series,
            "SOPInstanceUID": self.sop,
        }[keyword]


class DicomWebClient:
    """A small DICOMweb client with basic authentication and retries.

    Parameters
    ----------
    url
        The DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
    user, password
        Basic-auth credentials; no authentication when ``user`` is empty.
    retries
        Further attempts after a transient failure.
    timeout
        Seconds per request.
    """

    def __init__(
        self,
        url: str,
        user: str = "",
        password: str = "",
        *,
        retries: int = 3,
        timeout: float = 30.0,
        backoff: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.requests = 0
        self._auth = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if user
            else ""
        )

    def _get(self, path: str, accept: str) -> tuple[str, bytes]:
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Accept": accept}
        )
        if self._auth:
            request.add_header("Authorization", self._auth)
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.headers.get("Content-Type", ""), response.read()
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):
                    raise DataError(
                        f"PACS refused the credentials (HTTP {exc.code})"
                    ) from None
                if exc.code != 429 and exc.code < 500:
                    raise DataError(
                        f"PACS answered HTTP {exc.code} for {path}"
                    ) from None
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                reason = str(getattr(exc, "reason", exc))
            if attempt < self.retries:
                delay = self.backoff * 2**attempt
                logger.warning("PACS %s; retrying in %.1fs", reason, delay)
                time.sleep(delay)
        raise DataError(f"PACS unreachable after {self.retries + 1} attempts: {reason}")

    def search(self, query: str = "") -> list[Instance]:
        """QIDO-RS ``/instances`` with filters (``Modality=CR&...``), every page."""
        found: list[Instance] = []
        base = dict(urllib.parse.parse_qsl(query))
        while True:
            params = {**base, "limit": str(PAGE), "offset": str(len(found))}
            _, body = self._get(
                "/instances?" + urllib.parse.urlencode(params), "application/dicom+json"
            )
            page: list[dict[str, Any]] = json.loads(body) if body.strip() else []
            found.extend(_instance(item) for item in page)
            if len(page) < PAGE:
                return found

    def retrieve(self, instance: Instance) -> bytes:
        """WADO-RS: the instance's DICOM file."""
        path = (
            f"/studies/{instance.study}/series/{instance.series}"
            f"/instances/{instance.sop}"
        )
        content_type, body = self._get(path, DICOM_PARTS)
        parts = _multipart(content_type, body)
        if not parts:
            raise DataError(f"PACS returned no DICOM part for instance {instance.sop}")
        return parts[0]


def _instance(item: dict[str, Any]) -> Instance:
    def uid(keyword: str) -> str:
        values = item.get(TAGS[keyword], {}).get("Value", [])
        return str(values[0]) if values else ""

    return Instance(
        uid("StudyInstanceUID"), uid("SeriesInstanceUID"), uid("SOPInstanceUID")
    )


def _multipart(content_type: str, body: bytes) -> list[bytes]:
    """The payloads of a ``multipart/related`` response."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return [body] if body.startswith(b"\0" * 128 + b"DICM") else []
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            parts.append(payload)
    return parts


def client_for(site: SiteConfig) -> DicomWebClient:
    """A client with the site's URL, credentials, retries and timeout."""
    password = ""
    if site.dicomweb_password_file:
        try:
            password = (
                Path(site.dicomweb_password_file).read_text(encoding="utf-8").strip()
            )
        except OSError as exc:
            raise DataError(
                f"cannot read dicomweb-password-file: {exc.strerror}"
            ) from None
    return DicomWebClient(
        site.dicomweb_url,
        site.dicomweb_user,
        password,
        retries=site.dicomweb_retries,
        timeout=site.dicomweb_timeout,
    )


def fetch(
    client: DicomWebClient, instances: list[Instance], store: Path
) -> dict[Instance, Path]:
    """Download what is not stored yet; return every instance's local file."""
    store.mkdir(parents=True, exist_ok=True)
    local = {}
    for inst in instances:
        path = store / f"{inst.sop}.dcm"
        if not path.is_file():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(client.retrieve(inst))
            tmp.replace(path)
        local[inst] = path
    return local


@register_source("dicomweb")
def dicomweb_source(
    site: SiteConfig, run: FedwardConfig, pre: Preprocess, cache: DecodeCache | None
) -> SiteSplits:
    """Labelled instances found on the PACS, fetched once, then decoded."""
    field, labels = read_labels(Path(site.labels_csv), run.classes, site.label_key)
    if field == "path":
        raise DataError("a PACS source labels by UID; 'path' keys do not apply")
    client = client_for(site)
    found = client.search(site.dicomweb_query)
    wanted = [inst for inst in found if inst.get(field) in labels]
    store = (site.state_dir or Path(".fedward")) / "dicomweb"
    local = fetch(client, wanted, store)
    logger.info(
        "%s: PACS has %d matching instances, %d labelled; %d requests",
        site.name,
        len(found),
        len(wanted),
        client.requests,
    )
    labelled = [(local[inst], labels[inst.get(field)]) for inst in wanted]
    data = collect(labelled, store, pre, cache)
    return split_for_run(data, run, store)
