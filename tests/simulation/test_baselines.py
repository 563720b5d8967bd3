from pathlib import Path

import pytest

from fedward.config import FedwardConfig
from fedward.simulation.baselines import compare, run_baselines
from tests.conftest import WriteFolder


def figures(acc: float) -> dict[str, float]:
    return {"accuracy": acc, "recall": acc, "f1": acc, "auroc": acc}


def test_compare_gives_gain_and_ratio_per_hospital() -> None:
    summary = {"final": {"global": figures(0.8), "sites": {"a": figures(0.9)}}}
    baselines = {
        "local-only": {"global": figures(0.6), "sites": {"a": figures(0.5)}},
        "pooled": {"global": figures(1.0), "sites": {"a": figures(0.95)}},
    }

    rows = compare(summary, baselines)

    assert rows["global"]["f1"]["gain-over-local"] == pytest.approx(0.2)
    assert rows["global"]["f1"]["federated/pooled"] == pytest.approx(0.8)
    assert rows["a"]["accuracy"]["gain-over-local"] == pytest.approx(0.4)
    assert rows["a"]["accuracy"]["federated/pooled"] == pytest.approx(0.9 / 0.95)


def test_baselines_evaluate_on_every_hospitals_held_out_images(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    write_folder("h/one", per_class=10)
    write_folder("h/two", per_class=5, seed=1)
    config = FedwardConfig(
        data_root=str(tmp_path / "h"),
        image_size=32,
        num_hospitals=2,
        num_server_rounds=1,
        local_epochs=1,
    )

    out = run_baselines(config)

    assert out["budget-epochs"] == 1
    for kind in ("local-only", "pooled"):
        sites = out[kind]["sites"]
        assert set(sites) == {"one", "two"}
        total = sites["one"]["num-examples"] + sites["two"]["num-examples"]
        assert out[kind]["global"]["num-examples"] == total == 6
