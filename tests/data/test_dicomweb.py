"""The DICOMweb client's transport against a scripted HTTP server on loopback.

The real PACS (Orthanc) runs in tests/integration/test_orthanc.py; here a tiny
server answers each request with the next scripted status and body, so retries,
errors and the requests sent can be checked quickly and exactly.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
import pytest
from pydicom import examples

from fedward.data.sources.dicomweb import DicomWebClient, Instance, fetch
from fedward.errors import DataError

USER, PASSWORD = "hospital", "pw-never-logged"
CT = examples.ct
INSTANCE = Instance(CT.StudyInstanceUID, CT.SeriesInstanceUID, CT.SOPInstanceUID)
QIDO = [
    {
        "0020000D": {"vr": "UI", "Value": [INSTANCE.study]},
        "0020000E": {"vr": "UI", "Value": [INSTANCE.series]},
        "00080018": {"vr": "UI", "Value": [INSTANCE.sop]},
    }
]


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/dicom+json"


@dataclass
class Scripted:
    """What the server will answer, in order, and the requests it saw."""

    url: str
    answers: list[Answer]
    seen: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def pacs() -> Iterator[Scripted]:
    script = Scripted("", [])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            script.seen.append((self.path, self.headers.get("Authorization", "")))
            answer = script.answers.pop(0) if script.answers else Answer(200, b"[]")
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()


def client(url: str, password: str = PASSWORD) -> DicomWebClient:
    return DicomWebClient(url, USER, password, retries=2, backoff=0.01, timeout=5)


def multipart(dicom: bytes) -> Answer:
    body = (
        b"--xyz\r\nContent-Type: application/dicom\r\n\r\n" + dicom + b"\r\n--xyz--\r\n"
    )
    content_type = 'multipart/related; type="application/dicom"; boundary=xyz'
    return Answer(200, body, content_type)


def test_search_sends_the_filters_and_basic_auth_and_reads_every_page(
    pacs: Scripted,
) -> None:
    pacs.answers = [Answer(200, json.dumps(QIDO).encode()), Answer(200, b"[]")]

    found = client(pacs.url).search("Modality=CR&BodyPartExamined=CHEST")

    assert found == [INSTANCE]
    path, auth = pacs.seen[0]
    assert path.startswith("/dicom-web/instances?")
    assert "Modality=CR" in path
    assert "BodyPartExamined=CHEST" in path
    assert auth == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert "offset=1" in pacs.seen[1][0]


def test_transient_answers_are_retried_with_a_warning(
    pacs: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    pacs.answers = [Answer(503), Answer(429), Answer(200, json.dumps(QIDO).encode())]

    with caplog.at_level(logging.WARNING, logger="fedward"):
        found = client(pacs.url).search()

    assert found == [INSTANCE]
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert "HTTP 503" in retries[0]
    assert "HTTP 429" in retries[1]


def test_a_failing_pacs_is_reported_after_the_retries(pacs: Scripted) -> None:
    pacs.answers = [Answer(502), Answer(502), Answer(502), Answer(200, b"[]")]

    with pytest.raises(DataError, match=r"unreachable after 3 attempts: HTTP 502"):
        client(pacs.url).search()
    assert len(pacs.seen) == 3


def test_refused_credentials_are_neither_retried_nor_quoted(
    pacs: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    pacs.answers = [Answer(401)]

    with pytest.raises(DataError, match=r"refused the credentials \(HTTP 401\)") as err:
        client(pacs.url, password="wrong-" + PASSWORD).search()

    assert len(pacs.seen) == 1
    assert PASSWORD not in str(err.value)
    assert PASSWORD not in caplog.text


def test_other_http_errors_name_the_status(pacs: Scripted) -> None:
    pacs.answers = [Answer(404)]

    with pytest.raises(DataError, match=r"HTTP 404 to a search"):
        client(pacs.url).search()


def test_fetch_retrieves_each_instance_once(pacs: Scripted, tmp_path: Path) -> None:
    dicom = io.BytesIO()
    CT.save_as(dicom)
    pacs.answers = [multipart(dicom.getvalue())]

    first = fetch(client(pacs.url), [INSTANCE], tmp_path)
    again = fetch(client(pacs.url), [INSTANCE], tmp_path)

    assert first == again == {INSTANCE: tmp_path / f"{INSTANCE.sop}.dcm"}
    assert len(pacs.seen) == 1
    assert f"/instances/{INSTANCE.sop}" in pacs.seen[0][0]
    stored = pydicom.dcmread(first[INSTANCE])
    assert stored.SOPInstanceUID == INSTANCE.sop
    assert stored.PixelData == CT.PixelData


def test_an_unreadable_instance_is_a_data_error(pacs: Scripted) -> None:
    pacs.answers = [multipart(b"not a dicom file")]

    with pytest.raises(DataError, match="no readable DICOM instance"):
        client(pacs.url).retrieve(INSTANCE)


def test_a_url_that_is_not_http_is_a_data_error() -> None:
    with pytest.raises(DataError, match="dicomweb-url"):
        DicomWebClient("ftp://pacs.example/dicom-web")
