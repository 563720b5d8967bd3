"""The DICOMweb source against a real Orthanc PACS.

``test_pacs_suite_in_an_isolated_network`` installs Orthanc if missing, then runs
the ``pacs``-marked tests below in a network namespace with only a loopback
interface (see tests/pacs.py). Run directly, outside such a namespace, those tests
are skipped: they never start a server reachable from outside.
"""

import csv
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, MessageType, RecordDict

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.load import load_site
from fedward.data.sources.dicomweb import DicomWebClient
from fedward.errors import DataError
from fedward.fl.client_app import make_client_app
from fedward.fl.protocol import MetricKey, RecordKey, to_arrays
from fedward.models import get_model
from fedward.simulation.demo import write_demo
from tests.messages import instruction
from tests.pacs import (
    PASSWORD,
    USER,
    Orthanc,
    ensure_orthanc,
    free_port,
    running_orthanc,
)

ISOLATED = os.environ.get("FEDWARD_ISOLATED_NET") == "1"
pacs = pytest.mark.skipif(
    not ISOLATED, reason="runs inside the loopback-only namespace"
)
RUN = FedwardConfig(model="seed-cnn", image_size=48, batch_size=8, local_epochs=1)
IMAGES = 20


def namespaces_permitted() -> bool:
    probe = subprocess.run(
        ["unshare", "--net", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.mark.integration
def test_pacs_suite_in_an_isolated_network() -> None:
    if not namespaces_permitted():
        pytest.skip("network namespaces are not permitted here (unshare --net failed)")
    ensure_orthanc()
    script = (
        "ip link set lo up && FEDWARD_ISOLATED_NET=1 "
        f"{sys.executable} -m pytest -q -p no:cacheprovider -m pacs {__file__}"
    )

    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "5 passed" in result.stdout


@pytest.fixture
def pacs_site(tmp_path: Path) -> Iterator[tuple[SiteConfig, Orthanc]]:
    write_demo(tmp_path / "demo", 1, seed=0, max_images=IMAGES, fmt="dicom")
    files = sorted((tmp_path / "demo" / "hospital-1").rglob("*.dcm"))
    secret = tmp_path / "pacs-password"
    secret.write_text(PASSWORD)
    labels = tmp_path / "demo" / "hospital-1" / "labels.csv"
    with running_orthanc(tmp_path / "orthanc") as server:
        server.upload(files)
        site = SiteConfig(
            site_name="st-pacs",
            source="dicomweb",
            dicomweb_url=server.dicomweb,
            dicomweb_user=USER,
            dicomweb_password_file=str(secret),
            dicomweb_query="Modality=CR",
            labels_csv=str(labels),
            cache_dir=str(tmp_path / "site-state"),
        )
        yield site, server


@pacs
@pytest.mark.pacs
def test_labelled_instances_are_searched_retrieved_and_cached(
    pacs_site: tuple[SiteConfig, Orthanc],
) -> None:
    site, _ = pacs_site

    first = load_site(site, RUN)
    stored = sorted((Path(site.cache_dir) / "dicomweb").glob("*.dcm"))
    again = load_site(site, RUN)

    assert first.total() == IMAGES
    assert len(stored) == IMAGES
    assert again.total() == IMAGES
    assert first.train.labels.tolist() == again.train.labels.tolist()


@pacs
@pytest.mark.pacs
def test_only_labelled_and_matching_instances_are_fetched(
    pacs_site: tuple[SiteConfig, Orthanc], tmp_path: Path
) -> None:
    site, _ = pacs_site
    with Path(site.labels_csv).open() as fh:
        rows = list(csv.reader(fh))
    half = tmp_path / "half.csv"
    half.write_text("\n".join(",".join(r) for r in rows[: 1 + IMAGES // 2]) + "\n")
    client = DicomWebClient(site.dicomweb_url, USER, PASSWORD)

    none = client.search("Modality=MR")
    splits = load_site(
        SiteConfig(
            **{
                **site.__dict__,
                "labels_csv": str(half),
                "cache_dir": str(tmp_path / "s2"),
            }
        ),
        RUN,
    )

    assert none == []
    assert splits.total() == IMAGES // 2
    assert len(list((tmp_path / "s2" / "dicomweb").glob("*.dcm"))) == IMAGES // 2


@pacs
@pytest.mark.pacs
def test_a_hospital_trains_a_round_from_the_pacs(
    pacs_site: tuple[SiteConfig, Orthanc], tmp_path: Path
) -> None:
    site, _ = pacs_site
    toml = tmp_path / "site.toml"
    toml.write_text(
        "\n".join(f"{k} = {json.dumps(v)}" for k, v in site.to_mapping().items()) + "\n"
    )
    model = get_model("seed-cnn", num_classes=2, image_size=RUN.image_size)
    content = RecordDict(
        {
            RecordKey.ARRAYS: to_arrays(model),
            RecordKey.CONFIG: ConfigRecord({MetricKey.SERVER_ROUND: 1}),
        }
    )
    context = Context(1, 3, {"site-config": str(toml)}, RecordDict(), {})

    reply = make_client_app(RUN)(instruction(content, 3, MessageType.TRAIN), context)

    assert not reply.has_error()
    metrics = reply.content[RecordKey.METRICS]
    assert metrics[MetricKey.NUM_EXAMPLES] == len(load_site(site, RUN).train)
    assert reply.content[RecordKey.SITE][MetricKey.SITE_NAME] == "st-pacs"


@pacs
@pytest.mark.pacs
def test_wrong_credentials_are_a_clear_error(
    pacs_site: tuple[SiteConfig, Orthanc],
) -> None:
    site, _ = pacs_site

    with pytest.raises(DataError, match=r"refused the credentials \(HTTP 401\)"):
        DicomWebClient(site.dicomweb_url, USER, "wrong", retries=0).search()


@pacs
@pytest.mark.pacs
def test_an_unreachable_pacs_is_retried_then_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = DicomWebClient(
        f"http://127.0.0.1:{free_port()}/dicom-web", retries=2, backoff=0.01
    )

    with (
        caplog.at_level(logging.WARNING, logger="fedward"),
        pytest.raises(DataError, match="unreachable after 3 attempts"),
    ):
        client.search()
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retried) == 2  # 3 attempts
