"""The study report shows global, personalised and local-only figures side by side."""

import dataclasses
from pathlib import Path

from fedward.reporting.study import _personalization, render
from fedward.runfolder import RunFolder
from tests.reporting.test_study import tiny_report

FIGS = ("accuracy", "recall", "f1", "auroc")


def figures(value: float) -> dict[str, float]:
    return dict.fromkeys(FIGS, value)


def test_personalisation_table_per_hospital_beside_local_only(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.write_json(
        RunFolder.PERSONALIZATION,
        {
            "global": {"global": figures(0.8), "personalized": figures(0.9)},
            "sites": {"h1": {"global": figures(0.7), "personalized": figures(0.95)}},
        },
    )
    folder.write_json(
        RunFolder.BASELINES,
        {"local-only": {"global": figures(0.6), "sites": {"h1": figures(0.65)}}},
    )

    table = _personalization(folder)

    assert table is not None
    assert table.header == ["scope", "metric", "global", "personalised", "local-only"]
    assert ["h1", "f1", "0.700", "0.950", "0.650"] in table.rows
    assert ["all hospitals", "f1", "0.800", "0.900", "0.600"] in table.rows
    report = dataclasses.replace(tiny_report(), personalization=table)
    for template in ("report.md.j2", "report.html.j2"):
        assert "Personalised at each hospital" in render(report, template)
    assert "Personalised" not in render(tiny_report(), "report.md.j2")
