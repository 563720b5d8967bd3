"""Reading a run's configuration from a scenario file, flags and ``--set``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from fedward.config import FedwardConfig, read_toml
from fedward.errors import ConfigError


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs from ``--set``; values parsed as TOML scalars.

    Raises
    ------
    ConfigError
        Naming every pair that is not ``key=value``.
    """
    values: dict[str, Any] = {}
    problems = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set expects key=value, got {pair!r}")
            continue
        try:
            values[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = raw  # a bare word is a string
    if problems:
        raise ConfigError(problems)
    return values


def build_config(
    scenario: Path | None, options: dict[str, Any], settings: list[str]
) -> FedwardConfig:
    """Defaults, then the scenario, then flags and ``--set``; all checked at once."""
    values = read_toml(scenario) if scenario else {}
    values.pop("attack", None)  # [[attack]] tables: simulation.attacks reads them
    values.update({k: v for k, v in options.items() if v is not None})
    values.update(parse_set(settings))
    return FedwardConfig.from_mapping(values)
