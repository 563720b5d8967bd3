"""Configuration keys of hospitals that differ: checks, warnings, [[attack]] tables."""

import logging
from pathlib import Path

import pytest

from fedward.cli.options import build_config
from fedward.config import FedwardConfig
from fedward.errors import ConfigError


def test_strategy_names_and_keys_are_checked_all_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        FedwardConfig.from_mapping(
            {
                "strategy": "fedadamm",
                "server-momentum": 1.5,
                "update-min-cosine": -2.0,
                "model": "seed-cnn",
                "local-norm": True,  # seed-cnn has no normalisation layer
            }
        )

    text = "\n".join(info.value.problems)
    assert len(info.value.problems) == 4
    assert "'strategy' must be one of fedavg, fedprox, fedadam" in text
    assert "'server-momentum' = 1.5 is out of range [0.0, 0.999]" in text
    assert "'update-min-cosine' = -2.0 is out of range" in text
    assert "'local-norm' needs a model with normalisation layers" in text


def test_a_key_of_another_strategy_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="fedward.config"):
        FedwardConfig.from_mapping({"strategy": "fedavg", "proximal-mu": 0.1})
        FedwardConfig.from_mapping({"strategy": "fedprox", "proximal-mu": 0.1})

    warned = [r.getMessage() for r in caplog.records]
    assert warned == ["'proximal-mu' has no effect with strategy 'fedavg'"]


def test_bulyan_warns_when_too_few_hospitals_can_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="fedward.config"):
        FedwardConfig.from_mapping({"strategy": "bulyan", "min-train-nodes": 3})

    assert "needs at least 7 hospitals a round" in caplog.text


def test_a_scenario_with_attack_tables_still_builds_its_run_config(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "attacked.toml"
    scenario.write_text(
        'strategy = "fedmedian"\n[[attack]]\nsite = "hospital-1"\nkind = "nan"\n'
    )

    config = build_config(scenario, {}, [])

    assert config.strategy == "fedmedian"
    assert "attack" not in config.to_run_config()
