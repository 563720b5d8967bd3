import inspect
import os

import pytest

from fedward.simulation.engine import RaySettings


def test_flowers_engine_entry_still_takes_what_fedward_passes() -> None:
    from flwr.simulation.run_simulation import _run_simulation

    params = inspect.signature(_run_simulation).parameters

    passed = {
        "num_supernodes",
        "exit_event",
        "client_app",
        "server_app",
        "backend_name",
        "backend_config",
        "verbose_logging",
    }
    assert passed <= set(params)


def test_one_actor_gets_every_core_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    backend = RaySettings(cpus=2).backend_config()

    assert backend["client_resources"]["num_cpus"] == 2
    assert backend["init_args"]["num_cpus"] == 2
    assert backend["init_args"]["include_dashboard"] is False
    # its own Ray even where `ray start` left a cluster on this machine
    assert backend["init_args"]["address"] == "local"


def test_actors_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    backend = RaySettings(actors=2, cpus=4, object_store_mib=512).backend_config()

    assert backend["client_resources"]["num_cpus"] == 2
    assert backend["init_args"]["object_store_memory"] == 512 * 2**20


def test_a_ray_cluster_sets_its_own_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")

    init = RaySettings(cpus=8).backend_config()["init_args"]

    assert init["address"] == "10.0.0.5:6379"
    assert "num_cpus" not in init
    assert "num_gpus" not in init
    assert os.environ["RAY_ADDRESS"] == "10.0.0.5:6379"
