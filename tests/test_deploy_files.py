"""deploy/ is checked as far as this machine allows: no Docker engine, no cluster.

YAML files must parse and reference what exists; the example TOML files must pass
fedward's own config checks; systemd units go through ``systemd-analyze verify``.
"""

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from fedward.config import ServerConfig, SiteConfig

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_compose_services_reference_existing_files() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())

    services = compose["services"]
    assert {"server", "st-mary", "general", "orthanc"} <= set(services)
    assert services["server"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name in ("server", "st-mary", "general"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./compose/"):
                assert (DEPLOY / source).is_file(), source
        for network in services[name]["networks"]:
            assert network in compose["networks"]
    assert compose["networks"]["general-lan"]["internal"] is True
    for name in ("st-mary", "general"):  # approve the image's code, then run
        script = services[name]["command"][0]
        assert script.index("fedward hospital approve") < script.index("exec fedward")


def test_compose_configs_pass_fedward_checks() -> None:
    server, run = ServerConfig.from_server_file(DEPLOY / "compose" / "server.toml")
    sites = [
        SiteConfig.from_mapping(
            tomllib.loads((DEPLOY / "compose" / f"{n}.toml").read_text())
        )
        for n in ("st-mary", "general")
    ]

    assert run.num_server_rounds == 5
    assert server.address.endswith(":9092")
    assert {s.superlink for s in sites} == {"server:9092"}
    assert sites[1].source == "dicomweb"


def test_kubernetes_manifests_are_well_formed() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "server.yaml").read_text()))

    kinds = {d["kind"] for d in docs}
    assert kinds == {
        "Namespace",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
    }
    assert all(d["apiVersion"] and d["metadata"]["name"] for d in docs)
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["server.toml"]
    raw = tomllib.loads(config)
    ServerConfig.from_mapping({k: v for k, v in raw.items() if k != "federation"})
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["server", "--config", "/etc/fedward/server.toml"]


def test_example_server_file_is_valid() -> None:
    server, run = ServerConfig.from_server_file(DEPLOY / "server.example.toml")

    assert not server.insecure
    assert run.num_server_rounds == 10


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze"
)
def test_systemd_units_verify() -> None:
    units = sorted(str(p) for p in (DEPLOY / "systemd").glob("*.service"))

    result = subprocess.run(
        ["systemd-analyze", "verify", *units],
        capture_output=True,
        text=True,
        check=False,
    )

    assert len(units) == 2
    assert result.returncode == 0, result.stderr


def test_dockerfile_installs_fedward_and_runs_unprivileged() -> None:
    text = (DEPLOY / "Dockerfile").read_text()

    assert "FROM python:3.11" in text
    assert "torch==2.14.1" in text
    assert "USER fedward" in text
    assert 'ENTRYPOINT ["fedward"]' in text
