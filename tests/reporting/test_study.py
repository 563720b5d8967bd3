"""The study report of a real (small) federation, rendered in headless Chromium."""

import base64
import dataclasses
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import numpy as np
import pytest
from PIL import Image

from fedward.config import FedwardConfig
from fedward.errors import DataError
from fedward.metrics.intervals import auroc_interval, f1_bootstrap, wilson
from fedward.reporting.study import (
    Figure,
    Headline,
    StudyReport,
    Table,
    gather,
    render,
    write_report,
)
from fedward.runfolder import RunFolder
from fedward.simulation.demo import write_demo
from tests.simulate import simulate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_wilson_interval_matches_the_textbook_value() -> None:
    low, high = wilson(81, 263)  # Newcombe (1998), example: 0.2553 .. 0.3662

    assert low == pytest.approx(0.2553, abs=1e-4)
    assert high == pytest.approx(0.3662, abs=1e-4)


def test_auroc_and_f1_intervals_contain_the_value_and_shrink_with_n() -> None:
    small = auroc_interval(0.8, 20, 20)
    large = auroc_interval(0.8, 2000, 2000)
    cm = np.array([[40, 10], [5, 45]])
    f1_low, f1_high = f1_bootstrap(cm, ["a", "b"])

    assert small[0] < large[0] < 0.8 < large[1] < small[1]
    assert f1_low < 0.85 < f1_high


def tiny_report(site: str = "hospital-1", **config: object) -> StudyReport:
    figure = Figure("metrics.png", "per round", "iVBORw0KGgo=")
    return StudyReport(
        name="run",
        headline=Headline(1, 3, 0.9, 0.85, 0.95, 0.001, 0.05, "f1", 2),
        scopes=Table(["scope", "n"], [["all hospitals", "10"], [site, "10"]]),
        rounds=figure,
        figures=[figure],
        baselines=None,
        config={**FedwardConfig().to_mapping(), **config},
        classes=["normal", "opacity"],
        sites=Table(["site", "images"], [[site, "12"]]),
    )


def test_html_escapes_what_the_run_folder_says_and_markdown_keeps_it() -> None:
    report = tiny_report(site="<b>h&1</b>", model="<i>cnn</i>")

    page = render(report, "report.html.j2")
    md = render(report, "report.md.j2")

    assert "&lt;b&gt;h&amp;1&lt;/b&gt;" in page
    assert "Model: &lt;i&gt;cnn&lt;/i&gt;," in page
    assert "<b>" not in page
    assert "<i>" not in page
    assert "| <b>h&1</b> | 10 |" in md
    assert "Model: <i>cnn</i>, 3-channel 150x150 input" in md
    assert "accuracy 0.900, F1 0.850, AUROC 0.950 (binning error bound 0.0010)" in md
    assert "![per round](metrics.png)" in md


def test_a_value_missing_from_the_report_fails_loudly() -> None:
    report = tiny_report()
    del report.config["seed"]

    with pytest.raises(jinja2.UndefinedError, match="seed"):
        render(report, "report.md.j2")


def test_a_folder_without_the_run_files_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=RunFolder.SUMMARY):
        gather(RunFolder(tmp_path))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("study")
    write_demo(tmp / "data", 2, seed=0, max_images=30)
    write_demo(tmp / "held-out", 1, seed=9, max_images=12)
    held_out = tmp / "held-out" / "hospital-1"
    result = simulate(
        tmp / "data",
        tmp / "run",
        "--baselines",
        "--set",
        f"server-test-data={held_out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run"


def png_is_not_empty(data: bytes) -> bool:
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=float)
    return bool(pixels.std() > 5 and min(pixels.shape) > 100)


@pytest.mark.integration
def test_report_has_tables_plots_baselines_and_model_card(run_dir: Path) -> None:
    page, md = write_report(run_dir)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"]["central"]["num-examples"] == 12  # server-held test set
    assert (run_dir / "metrics.csv").read_text().count("\n") > 5
    text = md.read_text()
    for needed in (
        "Final round, per hospital",
        "sensitivity (opacity)",
        "auroc (opacity)",
        "Baselines (same budget",
        "Local-only vs federated vs pooled, with 95 % intervals",
        "local-only",
        "Model card",
        "Intended use",
        "Limits",
        "hospital-1",
        "hospital-2",
        "all hospitals",
    ):
        assert needed in text, needed
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", text)  # value [low, high]
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page.read_text())
    assert len(images) == 6  # rounds, sites, confusion, ROC, calibration, baselines
    assert all(png_is_not_empty(base64.b64decode(i)) for i in images)
    assert "http" not in page.read_text().split("<body>")[1]  # self-contained


@pytest.mark.integration
@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/test installs it)"
)
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    page, _ = write_report(run_dir)
    shot = tmp_path / "shot.png"

    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,4000",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (4000, 1100)
    coloured = (np.abs(pixels[..., 0] - pixels[..., 2]) > 40).mean()
    assert pixels.std() > 20
    assert coloured > 0.01  # the plots' colours are on the page, not only text


def test_a_secure_run_says_why_it_has_no_per_hospital_rows() -> None:
    plain = tiny_report()
    config = {**plain.config, "secure-aggregation": True}
    report = dataclasses.replace(
        plain, config=config, secure="secure aggregation was on"
    )

    for template in ("report.md.j2", "report.html.j2"):
        text = render(report, template)
        assert "No per-hospital rows: secure aggregation was on." in text
        assert "Secure aggregation: on (threshold more than half" in text
    assert "Secure aggregation: off." in render(tiny_report(), "report.md.j2")
