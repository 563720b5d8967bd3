"""deploy/ is checked as far as this machine allows: no Docker engine, no cluster.

YAML files must parse and reference what exists; the example TOML files must pass
fedward's own config checks; systemd units go through ``systemd-analyze verify``.
"""

import importlib.util
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
    for name in ("server", "st-mary", "general", "orthanc"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./compose/"):
                assert (DEPLOY / source).is_file(), source
        for network in services[name]["networks"]:
            assert network in compose["networks"]
    assert compose["networks"]["general-lan"]["internal"] is True
    # no image from a registry: Orthanc is built from Debian's packages too
    assert services["orthanc"]["build"]["dockerfile"] == "deploy/orthanc.Dockerfile"
    assert (DEPLOY / "orthanc.Dockerfile").is_file()
    # the hospital daemon owns restarts of its SuperNode, not the container engine
    assert services["st-mary"]["restart"] == services["general"]["restart"] == "no"
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


def test_dockerfiles_take_their_base_and_install_offline() -> None:
    fedward = (DEPLOY / "Dockerfile").read_text()
    orthanc = (DEPLOY / "orthanc.Dockerfile").read_text()

    for text in (fedward, orthanc):
        assert "ARG BASE=" in text
        assert "FROM ${BASE}" in text
    assert "pip install --no-index" in fedward  # the wheelhouse only
    assert "USER fedward" in fedward
    assert 'ENTRYPOINT ["fedward"]' in fedward
    assert "orthanc-dicomweb" in orthanc


def test_the_wheelhouse_pins_what_is_installed_here() -> None:
    spec = importlib.util.spec_from_file_location(
        "wheelhouse", DEPLOY / "wheelhouse.py"
    )
    assert spec is not None
    assert spec.loader is not None
    wheelhouse = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wheelhouse)

    pins = wheelhouse.pinned_closure()

    assert pins["torch"] == "2.14.1"
    assert pins["torchvision"] == "0.29.1"
    assert pins["flwr"] == "1.42.0"
    assert "ray" in pins  # flwr[simulation]
    assert "fedward" not in pins
    # torch from PyPI is a CUDA build: it does not import without these
    assert any(name.startswith("nvidia-cudnn") for name in pins)
