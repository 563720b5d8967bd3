"""DICOM source: a folder tree of DICOM files with labels from a CSV file.

The CSV has a header row with a ``label`` column (a class name) and one key
column that says which images a row labels::

    sop_instance_uid,label          one image
    series_instance_uid,label       every image of a series
    study_instance_uid,label        every image of a study
    path,label                      a file, relative to the data folder

Files are found by content, not extension, and each is read once: the same bytes
give the label key, the cache key and the pixels. Without a CSV the folder is
read as class subfolders of DICOM files.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import SiteSplits, collect
from fedward.data.decode import DecodeCache, Preprocess, RawFile
from fedward.data.discovery import list_files
from fedward.data.sources.folders import folders_source
from fedward.data.sources.registry import register_source
from fedward.data.splits import split_for_run
from fedward.errors import DataError

logger = logging.getLogger(__name__)

KEY_COLUMNS = {
    "sop_instance_uid": "SOPInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "study_instance_uid": "StudyInstanceUID",
    "path": "path",
}


def _column(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def read_labels(
    path: Path, classes: Sequence[str], key: str = "auto"
) -> tuple[str, dict[str, int]]:
    """The key field (a DICOM keyword or ``path``) and a map key -> label index.

    Raises
    ------
    DataError
        If the file is missing, has no ``label`` or key column, or names labels
        that are not among ``classes`` (all of them are listed).
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            header = [_column(c) for c in (rows[0].keys() if rows else [])]
    except FileNotFoundError:
        raise DataError(f"labels file not found: {path}") from None
    if not rows:
        raise DataError(f"{path}: no label rows")
    wanted = [_column(key)] if key != "auto" else list(KEY_COLUMNS)
    columns = [c for c in wanted if c in header]
    if "label" not in header or not columns:
        raise DataError(
            f"{path}: needs a 'label' column and one of {sorted(KEY_COLUMNS)}; "
            f"found {header}"
        )
    column = columns[0]
    index = {name: i for i, name in enumerate(classes)}
    labels: dict[str, int] = {}
    unknown: set[str] = set()
    for row in rows:
        clean = {_column(k): (v or "").strip() for k, v in row.items() if k}
        label = clean["label"]
        if label not in index:
            unknown.add(label)
            continue
        labels[clean[column]] = index[label]
    if unknown:
        raise DataError(
            f"{path}: labels {sorted(unknown)} are not among {list(classes)}"
        )
    return KEY_COLUMNS[column], labels


class LabelledFiles:
    """The labelled DICOM files under ``root``, read one at a time, in path order.

    Iterating yields ``(file, label)`` with the file's bytes already read, so its
    label key, cache key and pixels all come from one read. Files that are not
    DICOM or lack the key field go to ``foreign`` with a reason; files without a
    label are counted in ``unlabelled``.

    Raises
    ------
    DataError
        From :func:`read_labels`, when the labels file is unusable.
    """

    def __init__(
        self, root: Path, labels_csv: Path, classes: Sequence[str], key: str
    ) -> None:
        self.root = root
        self.labels_csv = labels_csv
        self.field, self.labels = read_labels(labels_csv, classes, key)
        self.foreign: list[tuple[str, str]] = []
        self.unlabelled = 0

    def __iter__(self) -> Iterator[tuple[RawFile, int]]:
        for path in list_files(self.root):
            if path == self.labels_csv:
                continue
            relative = path.relative_to(self.root).as_posix()
            try:
                file = RawFile.read(path)
                if not file.is_dicom:
                    self.foreign.append((relative, "not DICOM"))
                    continue
                value = (
                    relative
                    if self.field == "path"
                    else str(file.header().get(self.field, ""))
                )
            except DataError as exc:
                self.foreign.append((relative, exc.problems[0]))
                continue
            if not value:
                self.foreign.append(
                    (relative, f"header has no {self.field} (truncated?)")
                )
            elif value in self.labels:
                yield file, self.labels[value]
            else:
                self.unlabelled += 1


@register_source("dicom")
def dicom_source(
    site: SiteConfig, run: FedwardConfig, pre: Preprocess, cache: DecodeCache | None
) -> SiteSplits:
    """DICOM files labelled by a CSV, or DICOM class subfolders without one."""
    if not site.labels_csv:
        return folders_source(site, run, pre, cache)
    root = Path(site.data_path)
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    files = LabelledFiles(root, Path(site.labels_csv), run.classes, site.label_key)
    data = collect(files, root, pre, cache)
    if files.unlabelled:
        logger.info(
            "%s: %d DICOM files have no label and are left out",
            site.name,
            files.unlabelled,
        )
    data.skipped = files.foreign + data.skipped
    return split_for_run(data, run, root)
