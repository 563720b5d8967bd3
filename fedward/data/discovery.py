"""What a folder holds: its files, its class folders, its hospital folders.

Only the file system is read here; nothing is decoded.
"""

from __future__ import annotations

from pathlib import Path

from fedward.errors import DataError


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def list_files(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder``, sorted."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def holds_files(folder: Path) -> bool:
    """Whether any non-hidden file lies below ``folder``."""
    return any(
        p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        for p in folder.rglob("*")
    )


def subfolders(folder: Path) -> list[Path]:
    """The non-hidden folders directly inside ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p))


def find_class_names(root: Path) -> list[str]:
    """Class folder names under ``root`` (or under ``root/train``), sorted."""
    base = root / "train" if (root / "train").is_dir() else root
    if not base.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    return [p.name for p in subfolders(base)]


def hospital_folders(root: Path) -> list[Path]:
    """One folder per hospital under ``root``, sorted by name."""
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    folders = subfolders(root)
    if not folders:
        raise DataError(f"{root} holds no hospital folders")
    return folders


def is_per_hospital(root: Path) -> bool:
    """Whether ``root`` holds one folder per hospital (folders of folders).

    Otherwise its subfolders are class folders of one pooled set.
    """
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    return any(subfolders(sub) for sub in subfolders(root))


def data_class_names(root: Path) -> list[str]:
    """Class names found in a pooled or per-hospital data folder, sorted."""
    if not is_per_hospital(root):
        return find_class_names(root)
    names: set[str] = set()
    for folder in hospital_folders(root):
        names.update(find_class_names(folder))
    return sorted(names)
