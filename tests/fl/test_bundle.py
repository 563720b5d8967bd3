"""The app bundle hospitals approve is exactly the Flower app and what it imports."""

import io
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import grimp
import pytest

from fedward.deployment.bundle import AppSummary, app_dir, build_app
from tests.deploy import this_app

APPS = ("fedward.fl.client_app", "fedward.fl.server_app")


def bundled_modules() -> set[str]:
    """Module names of the bundle's Python files."""
    names = set()
    for f in this_app().files:
        if f.path.endswith(".py"):
            name = f.path[: -len(".py")].replace("/", ".")
            names.add(name.removesuffix(".__init__"))
    return names


def imported_by_the_apps() -> set[str]:
    """Every fedward module the apps import, at module level or inside functions."""
    graph = grimp.build_graph("fedward")
    needed = set(APPS)
    for app in APPS:
        needed |= graph.find_upstream_modules(app)
    # a package's __init__ runs when any of its modules is imported
    for name in list(needed):
        parts = name.split(".")
        needed |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return needed


def test_every_module_the_apps_import_is_bundled_and_nothing_else() -> None:
    bundled, needed = bundled_modules(), imported_by_the_apps()

    assert needed <= bundled, sorted(needed - bundled)
    assert bundled <= needed, sorted(bundled - needed)
    for outside in ("cli", "reporting", "deployment", "inference", "simulation"):
        assert not any(m.startswith(f"fedward.{outside}") for m in bundled)


def test_the_apps_import_from_an_unpacked_bundle_alone(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(build_app())) as fab:
        fab.extractall(tmp_path / "app")
    # a fresh interpreter that finds fedward only in the unpacked bundle: the
    # installed (editable) fedward is refused, so any import from outside the
    # bundle fails
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys
        sys.path.insert(0, {str(tmp_path / "app")!r})
        class OnlyTheBundle(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "fedward":
                    raise ImportError(f"{{name}} is not in the bundle")
        # drop the editable install's finder; refuse whatever else finds fedward
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]
        sys.meta_path.append(OnlyTheBundle())
        for app in {APPS!r}:
            importlib.import_module(app).app
        loaded = [m for m in sys.modules if m.split(".")[0] == "fedward"]
        outside = [m for m in loaded
                   if not (getattr(sys.modules[m], "__file__", "") or "")
                   .startswith({str(tmp_path / "app")!r})]
        assert not outside, outside
        print(len(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 20


@pytest.mark.parametrize(
    "edited",
    [
        "fedward/reporting/study.py",
        "fedward/cli/__init__.py",
        "fedward/deployment/gate.py",
        "fedward/inference/export.py",
        "fedward/simulation/demo.py",
    ],
)
def test_editing_code_outside_the_app_keeps_the_hash(
    tmp_path: Path, edited: str
) -> None:
    project = tmp_path / "project"
    shutil.copytree(
        app_dir() / "fedward",
        project / "fedward",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(app_dir() / "pyproject.toml", project / "pyproject.toml")
    with (project / edited).open("a") as f:
        f.write("# a wording fix\n")

    assert AppSummary.from_fab(build_app(project)).sha256 == this_app().sha256
    with (project / "fedward/fl/protocol.py").open("a") as f:
        f.write("# what a hospital sends changed\n")
    assert AppSummary.from_fab(build_app(project)).sha256 != this_app().sha256
