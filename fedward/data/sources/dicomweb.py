"""PACS source over DICOMweb: search with QIDO-RS, retrieve with WADO-RS.

The transport is :class:`dicomweb_client.api.DICOMwebClient` on a
:class:`requests.Session` with basic authentication and a :class:`urllib3.util.Retry`
for transient failures (connection errors, HTTP 429 and 500/502/503/504, with
exponential back-off). Instances are stored once in the site's state folder
(``dicomweb/<uid>.dcm``) and then read like a DICOM folder with a labels CSV (keyed
by SOP, series or study instance UID). Credentials come from the site's own config.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session, create_session_from_user_pass
from pydicom.errors import InvalidDicomError
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry

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
TRANSIENT = (429, 500, 502, 503, 504)
T = TypeVar("T")


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


class _LoggedRetry(Retry):
    """urllib3's ``Retry`` that logs each retry by its cause alone (no URL, no UID)."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        cause = f"HTTP {response.status}" if response is not None else _cause(error)
        logger.warning(
            "PACS request failed (%s); retrying in %.1fs, %s retries left",
            cause,
            retry.get_backoff_time(),
            retry.total,
        )
        return retry


class DicomWebClient:
    """Search and retrieve instances through ``dicomweb-client``.

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
    backoff
        urllib3's back-off factor: retry ``n`` waits ``backoff * 2**(n - 1)``
        seconds (the first retry at once).

    Raises
    ------
    DataError
        ``url`` is not an http(s) URL.
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
        self.retries = retries
        if user:
            session = create_session_from_user_pass(user, password)
        else:
            session = create_session()
        retry = _LoggedRetry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=TRANSIENT,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
        )
        for scheme in ("http://", "https://"):
            session.mount(scheme, HTTPAdapter(max_retries=retry))
        try:
            self.web = DICOMwebClient(url.rstrip("/"), session=session, timeout=timeout)
        except ValueError:
            raise DataError("dicomweb-url is not an http(s) DICOMweb URL") from None
        # one retry policy: the session's, not dicomweb-client's own as well
        self.web.set_http_retry_params(retry=False)

    def search(self, query: str = "") -> list[Instance]:
        """QIDO-RS ``/instances`` with filters (``Modality=CR&...``), every page."""
        filters = dict(urllib.parse.parse_qsl(query))
        found = self._call(
            "search",
            lambda: self.web.search_for_instances(
                search_filters=filters, limit=PAGE, get_remaining=True
            ),
        )
        return [_instance(item) for item in found]

    def retrieve(self, instance: Instance) -> pydicom.Dataset:
        """WADO-RS: the instance as a pydicom dataset."""
        try:
            return self._call(
                "retrieve",
                lambda: self.web.retrieve_instance(
                    instance.study, instance.series, instance.sop
                ),
            )
        except (ValueError, InvalidDicomError):
            raise DataError("PACS returned no readable DICOM instance") from None

    def _call(self, what: str, request: Callable[[], T]) -> T:
        """Run one request; turn transport failures into one clear ``DataError``."""
        try:
            return request()
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise DataError(
                    f"PACS refused the credentials (HTTP {status})"
                ) from None
            if status in TRANSIENT:
                raise self._unreachable(f"HTTP {status}") from None
            raise DataError(f"PACS answered HTTP {status} to a {what}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise self._unreachable(_cause(exc)) from None
        except requests.RequestException as exc:
            raise DataError(f"PACS {what} failed: {_cause(exc)}") from None

    def _unreachable(self, cause: str) -> DataError:
        return DataError(f"PACS unreachable after {self.retries + 1} attempts: {cause}")


def _cause(exc: BaseException | None) -> str:
    """The innermost cause of a transport error, e.g. ``Connection refused``."""
    if exc is None:
        return "unknown error"
    for _ in range(16):  # requests -> urllib3 -> socket: a few links deep
        links = (getattr(exc, "reason", None), exc.__cause__, exc.__context__)
        inner = next(
            (e for e in (*links, *exc.args[:1]) if isinstance(e, BaseException)), None
        )
        if inner is None:
            break
        exc = inner
    text = exc.strerror if isinstance(exc, OSError) else None
    return str(text or exc or type(exc).__name__)


def _instance(item: dict[str, Any]) -> Instance:
    def uid(keyword: str) -> str:
        values = item.get(TAGS[keyword], {}).get("Value", [])
        return str(values[0]) if values else ""

    return Instance(
        uid("StudyInstanceUID"), uid("SeriesInstanceUID"), uid("SOPInstanceUID")
    )


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
    downloaded = 0
    for inst in instances:
        path = store / f"{inst.sop}.dcm"
        if not path.is_file():
            tmp = path.with_suffix(".part")
            client.retrieve(inst).save_as(tmp)
            tmp.replace(path)
            downloaded += 1
        local[inst] = path
    if downloaded:
        logger.info("downloaded %d new instances from the PACS", downloaded)
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
        "%s: PACS has %d matching instances, %d labelled",
        site.name,
        len(found),
        len(wanted),
    )
    labelled = [(local[inst], labels[inst.get(field)]) for inst in wanted]
    data = collect(labelled, store, pre, cache)
    return split_for_run(data, run, store)
