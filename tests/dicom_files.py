"""Real DICOM files that packages ship: pydicom's test files and pydicom-data.

Globbed from the installed folders; ``pydicom.data.get_testdata_files`` would try
to download missing files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pydicom

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _pydicom_data() -> Path:
    spec = importlib.util.find_spec("data_store")
    if spec is None or spec.origin is None:
        raise RuntimeError("pydicom-data is not installed (pip install -e '.[dev]')")
    return Path(spec.origin).parent / "data"


PYDICOM_DATA = _pydicom_data()
FOLDERS = (PYDICOM_TEST_FILES, PYDICOM_DATA)


def shipped(name: str) -> Path:
    """A shipped file by name, from whichever package has it."""
    for folder in FOLDERS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(name)


def all_files(folder: Path) -> list[Path]:
    """Every file a package ships in ``folder`` (DICOM or not)."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
