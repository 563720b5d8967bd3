"""The app bundle a run ships to hospitals: a Flower FAB, identified by its SHA-256.

``flwr run`` zips the project's code (``fab-include`` in pyproject.toml: the
``fedward`` package) into a FAB and the SuperLink hands it to every SuperNode,
which unpacks and runs it. Flower builds FABs deterministically (sorted entries,
fixed timestamps), so the same source always gives the same hash; that is what
lets a hospital approve a release by hash before any run.
"""

from __future__ import annotations

import hashlib
import io
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import fedward
from fedward.errors import FedwardError

CONTENT_MANIFEST = ".info/CONTENT"


class AppBundleError(FedwardError):
    """A file is not a readable Flower app bundle (FAB)."""


def app_dir() -> Path:
    """The fedward project folder (with pyproject.toml) that ``flwr run`` bundles."""
    root = Path(fedward.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise AppBundleError(
            "no fedward source checkout here (pip install -e .): cannot build the app"
        )
    return root


def build_app(project: Path | None = None) -> bytes:
    """The FAB ``flwr run`` would send for ``project`` (default: this fedward)."""
    from flwr.cli.build import build_fab_from_disk

    return build_fab_from_disk(project or app_dir())


def sha256(content: bytes) -> str:
    """A FAB's identity: the hex SHA-256 of its bytes, as Flower computes it."""
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class BundledFile:
    """One file of a FAB, as its manifest lists it."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class AppSummary:
    """What a FAB is: name, version, entry points, declared dependencies, files."""

    sha256: str
    app: str  # publisher/name
    version: str
    components: dict[str, str]
    dependencies: list[str]
    files: list[BundledFile]

    @classmethod
    def from_fab(cls, content: bytes) -> AppSummary:
        """Read a FAB's pyproject.toml and manifest.

        Raises
        ------
        AppBundleError
            If ``content`` is not a zip with a pyproject.toml and a manifest.
        """
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as fab:
                project = tomllib.loads(fab.read("pyproject.toml").decode())
                manifest = fab.read(CONTENT_MANIFEST).decode()
        except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
            raise AppBundleError(f"not a Flower app bundle (FAB): {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise AppBundleError(f"the FAB's pyproject.toml is invalid: {exc}") from exc
        files = []
        for line in manifest.splitlines():
            path, digest, bits = line.rsplit(",", 2)
            files.append(BundledFile(path, digest, int(bits) // 8))
        meta = project.get("project", {})
        flwr_app = project.get("tool", {}).get("flwr", {}).get("app", {})
        return cls(
            sha256=sha256(content),
            app=f"{flwr_app.get('publisher', '?')}/{meta.get('name', '?')}",
            version=str(meta.get("version", "?")),
            components={k: str(v) for k, v in flwr_app.get("components", {}).items()},
            dependencies=[str(d) for d in meta.get("dependencies", [])],
            files=files,
        )

    def differences(self, other: AppSummary) -> list[str]:
        """Files added (+), removed (-) or changed (~) in ``self`` against ``other``."""
        mine = {f.path: f.sha256 for f in self.files}
        theirs = {f.path: f.sha256 for f in other.files}
        changes = [f"+ {p}" for p in sorted(mine.keys() - theirs.keys())]
        changes += [f"- {p}" for p in sorted(theirs.keys() - mine.keys())]
        changes += [
            f"~ {p}"
            for p in sorted(mine.keys() & theirs.keys())
            if mine[p] != theirs[p]
        ]
        return changes

    def describe(self, installed: AppSummary | None = None) -> list[str]:
        """Lines for a person deciding whether to approve this code."""
        size = sum(f.size for f in self.files)
        lines = [
            f"app           {self.app} {self.version}",
            f"sha256        {self.sha256}",
            *(f"{k:<13} {v}" for k, v in sorted(self.components.items())),
            f"files         {len(self.files)} ({size / 1024:.0f} KiB of code)",
            "dependencies  declared only; a run installs nothing on this machine:",
            *(f"              {d}" for d in self.dependencies),
        ]
        if installed is None:
            return lines
        if installed.sha256 == self.sha256:
            return [*lines, "compared with the fedward installed here: identical"]
        changes = self.differences(installed)
        return [
            *lines,
            f"compared with the fedward installed here ({installed.version}): "
            f"{len(changes)} file(s) differ",
            *(f"              {c}" for c in changes),
        ]
