import json
from pathlib import Path

import pytest

from fedward.cli.options import build_config
from fedward.config import FedwardConfig, SiteConfig
from fedward.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_a_scenario_gives_each_simulated_hospital_its_own_settings() -> None:
    config = FedwardConfig.from_toml(ROOT / "simulations" / "dp-3-hospitals.toml")

    assert config.dp
    assert config.dp_target_epsilon > 0
    every, third = (
        config.simulated_site("hospital-1"),
        config.simulated_site("hospital-3"),
    )
    assert "privacy-budget" in every
    assert third["privacy-budget"] < every["privacy-budget"]


def test_set_reaches_every_or_one_simulated_hospital(tmp_path: Path) -> None:
    scenario = tmp_path / "dp.toml"
    scenario.write_text(
        "dp = true\ndp-noise-multiplier = 1.0\n"
        "[site]\nprivacy-budget = 8.0\n[sites.hospital-2]\ndp-delta = 1e-6\n"
    )

    config = build_config(
        scenario,
        {},
        ["site.dp-accountant=prv", "sites.hospital-2.privacy-budget=2.5"],
    )

    assert json.loads(config.simulated_sites)["*"] == {
        "privacy-budget": 8.0,
        "dp-accountant": "prv",
    }
    assert config.simulated_site("hospital-2") == {
        "privacy-budget": 2.5,
        "dp-accountant": "prv",
        "dp-delta": 1e-6,
    }
    assert config.simulated_site("hospital-1")["privacy-budget"] == 8.0


def test_every_privacy_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(
            None,
            {},
            [
                "dp=true",
                "dp-delta=0.5",
                "site.privacy-budget=-1",
                "sites.hospital-2.data-path=/elsewhere",
                "sites.hospital-3.dp=yes",
            ],
        )

    problems = caught.value.problems
    assert len(problems) == 5, problems
    assert (
        "config: 'dp' needs 'dp-target-epsilon' or 'dp-noise-multiplier'" in problems[1]
    )
    assert any("'dp-delta' = 0.5 is out of range" in p for p in problems)
    assert any(
        "every simulated site: site config: 'privacy-budget'" in p for p in problems
    )
    assert any("site 'hospital-2': 'data-path' is not a setting" in p for p in problems)
    assert any(
        "site 'hospital-3': site config: 'dp' must be bool" in p for p in problems
    )


def test_a_hospitals_ledger_sits_beside_its_site_toml(tmp_path: Path) -> None:
    site_file = tmp_path / "site.toml"
    site_file.write_text(
        'site-name = "general"\ndata-path = "data"\ndp = true\nprivacy-budget = 8.0\n'
    )

    site = SiteConfig.from_site_file(site_file)

    assert site.ledger_path == tmp_path / "general-privacy-ledger.jsonl"
    assert (site.dp, site.privacy_budget, site.privacy_unit) == (True, 8.0, "auto")
