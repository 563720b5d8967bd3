"""Reading a run's configuration from a scenario file, flags and ``--set``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from fedward.config import FedwardConfig, read_run_toml, with_site_settings
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


def split_site_settings(
    values: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Run keys, and simulated hospitals' settings from dotted ``--set`` keys.

    ``site.<key>`` sets a key for every simulated hospital, ``sites.<name>.<key>``
    for one, as a scenario's ``[site]`` and ``[sites.<name>]`` tables do.
    """
    run: dict[str, Any] = {}
    sites: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        parts = key.split(".")
        if parts[0] == "site" and len(parts) == 2:
            sites.setdefault("*", {})[parts[1]] = value
        elif parts[0] == "sites" and len(parts) >= 3:
            sites.setdefault(".".join(parts[1:-1]), {})[parts[-1]] = value
        else:
            run[key] = value
    return run, sites


def build_config(
    scenario: Path | None, options: dict[str, Any], settings: list[str]
) -> FedwardConfig:
    """Defaults, then the scenario, then flags and ``--set``; all checked at once."""
    values = read_run_toml(scenario) if scenario else {}
    values.update({k: v for k, v in options.items() if v is not None})
    run, sites = split_site_settings(parse_set(settings))
    values.update(run)
    return FedwardConfig.from_mapping(with_site_settings(values, sites))
