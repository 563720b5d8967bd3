import tomllib
from pathlib import Path

import pytest

from fedward.config import FedwardConfig, SiteConfig
from fedward.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_run_config_mirrors_the_dataclass_defaults() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    table = pyproject["tool"]["flwr"]["app"]["config"]

    assert table == FedwardConfig().to_run_config()


def test_from_mapping_reads_kebab_case_keys() -> None:
    config = FedwardConfig.from_mapping({"local-epochs": 3, "learning-rate": 1})

    assert config.local_epochs == 3
    assert config.learning_rate == 1.0
    assert isinstance(config.learning_rate, float)


def test_every_problem_is_reported_at_once() -> None:
    bad = {
        "local-epoch": 2,  # unknown (typo)
        "batch-size": "32",  # wrong type
        "learning-rate": 5.0,  # out of range
        "device": "tpu",  # not a choice
        "augment": 1,  # int is not bool
    }

    with pytest.raises(ConfigError) as info:
        FedwardConfig.from_mapping(bad)

    problems = info.value.problems
    assert len(problems) == 5
    text = "\n".join(problems)
    assert "unknown key 'local-epoch' (did you mean 'local-epochs'?)" in text
    assert "'batch-size' must be int" in text
    assert "'learning-rate' = 5.0 is out of range" in text
    assert "'device' must be one of auto, cpu, cuda" in text
    assert "'augment' must be bool" in text


def test_cross_field_problems_are_reported() -> None:
    with pytest.raises(ConfigError) as info:
        FedwardConfig.from_mapping(
            {"class-names": "only", "val-fraction": 0.5, "test-fraction": 0.45}
        )

    text = "\n".join(info.value.problems)
    assert "at least two" in text
    assert "must be below 0.9" in text


def test_toml_sections_are_flattened_over_a_base(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[training]\nlocal-epochs = 4\n[data]\nmodel = "resnet18"\n')

    config = FedwardConfig.from_toml(path, base=FedwardConfig(seed=7))

    assert (config.local_epochs, config.model, config.seed) == (4, "resnet18", 7)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("local-epochs = = 4\n")

    with pytest.raises(ConfigError, match="not valid TOML"):
        FedwardConfig.from_toml(path)


def test_odd_but_legal_values_warn(caplog: pytest.LogCaptureFixture) -> None:
    FedwardConfig.from_mapping({"learning-rate": 0.5})

    assert "unusually high" in caplog.text


@pytest.mark.parametrize("scenario", sorted((ROOT / "simulations").glob("*.toml")))
def test_shipped_scenarios_are_valid(scenario: Path) -> None:
    config = FedwardConfig.from_toml(scenario)

    assert config.num_hospitals >= 2


def test_secure_aggregation_refuses_what_needs_single_updates_all_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        FedwardConfig.from_mapping(
            {"secure-aggregation": True, "min-train-nodes": 1, "secure-threshold": 1}
        )
    assert len(err.value.problems) == 2
    assert "'min-train-nodes' >= 2" in str(err.value)
    assert "'secure-threshold' must be 0" in str(err.value)


def test_a_robust_strategy_cannot_run_under_secure_aggregation() -> None:
    secure = {"secure-aggregation": True}
    for ok in ("fedavg", "fedprox"):
        assert FedwardConfig.from_mapping({**secure, "strategy": ok}).secure_aggregation
    with pytest.raises(ConfigError, match="'strategy' = 'krum' needs each hospital"):
        FedwardConfig.from_mapping({**secure, "strategy": "krum"})
    with pytest.raises(ConfigError, match="'personalize-epochs' reports each"):
        FedwardConfig.from_mapping({**secure, "personalize-epochs": 1})


def test_a_site_certificate_defaults_to_node_crt_beside_the_node_key(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site.toml"
    site.write_text('data-path = "d"\nnode-key = "keys/node.key"\n')

    config = SiteConfig.from_site_file(site)

    assert config.node_certificate == str(tmp_path / "keys" / "node.crt")
    assert config.figures_dir == str(tmp_path / "d-figures")


def test_batch_norm_stays_at_each_hospital_under_secure_aggregation() -> None:
    plain = FedwardConfig.from_mapping({"model": "seed-cnn-bn"})
    secure = FedwardConfig.from_mapping(
        {"model": "seed-cnn-bn", "secure-aggregation": True}
    )
    private = FedwardConfig.from_mapping(
        {"secure-aggregation": True, "dp": True, "dp-noise-multiplier": 1.0}
    )
    seed = FedwardConfig.from_mapping({"model": "seed-cnn", "secure-aggregation": True})

    assert not plain.norm_stays_local
    assert secure.norm_stays_local  # running statistics exceed the clip range
    assert not private.norm_stays_local  # DP trains the GroupNorm variant
    assert not seed.norm_stays_local


def test_half_precision_on_the_wire_needs_an_averaging_strategy() -> None:
    for strategy in ("fedavg", "fedprox"):
        config = {"transfer-dtype": "bfloat16", "strategy": strategy}
        assert FedwardConfig.from_mapping(config).transfer_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="'transfer-dtype' = 'float16' needs"):
        FedwardConfig.from_mapping({"transfer-dtype": "float16", "strategy": "krum"})
