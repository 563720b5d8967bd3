"""What an unlabelled folder holds: the first look at a hospital's export.

Before anyone labels an export, :func:`inventory` counts its files by the coded
header fields (modality, photometric interpretation, size, bits stored, frames,
transfer syntax) and decodes each one as training would, so "decodable" means
fedward can train on it and every other file has its quarantine reason. Only
coded values are counted: no patient, study or free-text field is read out, and
a value that is not a well-formed code or number is counted as such, not shown.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.decode import (
    IMAGE_SUFFIXES,
    DecodeCache,
    NotSelected,
    Preprocess,
    RawFile,
    decode,
)
from fedward.data.discovery import holds_files, list_files, subfolders
from fedward.data.load import (
    QUARANTINE_FILE,
    preprocess_for,
    writable_state,
    write_quarantine,
)
from fedward.errors import DataError

HOW_TO_LABEL = (
    "no labels found. To train, put the images in class folders "
    '(<folder>/<class>/...), or write a site.toml with source = "dicom", '
    "data-path and labels-csv: a CSV with a 'label' column and one key column, "
    "sop_instance_uid, series_instance_uid, study_instance_uid or path "
    "(relative to data-path)"
)
KINDS = ("DICOM", "picture", "other", "unreadable")
FIELDS = (
    "modality",
    "photometric-interpretation",
    "image-size",
    "bits-stored",
    "frames",
    "transfer-syntax",
)
_CODE = re.compile(r"[A-Z0-9_ ]{1,16}")  # a DICOM code string (CS)


def has_labels(site: SiteConfig) -> bool:
    """Whether a site says how its images are labelled.

    A labels CSV, a source that carries its own labels (``dicomweb``, ``npz``),
    or class folders holding files; a folder of loose files has none.
    """
    if site.labels_csv or site.source not in ("folders", "dicom"):
        return True
    root = Path(site.data_path)
    base = root / "train" if (root / "train").is_dir() else root
    if not base.is_dir():
        return True  # let the source report the missing folder
    return any(holds_files(folder) for folder in subfolders(base))


def _code(value: Any) -> str:
    text = str(value or "").strip()
    if not text:
        return "(none)"
    return text if _CODE.fullmatch(text) else "(not a code)"


def _number(value: Any, default: str = "(none)") -> str:
    if value is None or value == "":
        return default
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "(not a number)"


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if not uid:
        return "(no file meta)"
    uid = UID(str(uid))
    return uid.name if uid.is_transfer_syntax else "(unrecognised)"


def header_codes(ds: Dataset) -> dict[str, str]:
    """The coded fields of :data:`FIELDS` of one header, as display strings."""
    rows, columns = _number(ds.get("Rows")), _number(ds.get("Columns"))
    return {
        "modality": _code(ds.get("Modality")),
        "photometric-interpretation": _code(ds.get("PhotometricInterpretation")),
        "image-size": "(none)" if rows == columns == "(none)" else f"{rows}x{columns}",
        "bits-stored": _number(ds.get("BitsStored")),
        "frames": _number(ds.get("NumberOfFrames"), default="1"),
        "transfer-syntax": _transfer_syntax(ds),
    }


def short_reason(reason: str) -> str:
    """A quarantine reason without the decoder's detail (which may quote values)."""
    return ": ".join(reason.split(": ")[:2])


def reason_kind(reason: str) -> str:
    """What went wrong, without detail: ``undecodable``, ``no pixel data``..."""
    return re.sub(r" \(.*\)$", "", reason.split(": ")[0])


def _kind(file: RawFile) -> str:
    if file.path.suffix.lower() in IMAGE_SUFFIXES:
        return "picture"
    return "DICOM" if file.is_dicom else "other"


class _Tally:
    """Counts over a folder's files, one file at a time."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.fields: dict[str, Counter[str]] = {f: Counter() for f in FIELDS}
        self.outcome: Counter[str] = Counter()
        self.skipped: list[tuple[str, str]] = []

    def add(
        self, path: Path, relative: str, pre: Preprocess, cache: DecodeCache | None
    ) -> None:
        try:
            file = RawFile.read(path)
        except DataError as exc:
            self.kinds["unreadable"] += 1
            self._quarantine(relative, exc.problems[0])
            return
        kind = _kind(file)
        self.kinds[kind] += 1
        if kind == "DICOM":
            try:
                codes = header_codes(file.header())
            except DataError:
                codes = dict.fromkeys(FIELDS, "(header does not parse)")
            for name, value in codes.items():
                self.fields[name][value] += 1
        try:
            decode(file, pre, cache)
        except NotSelected:
            self.outcome["excluded-by-filters"] += 1
        except DataError as exc:
            self._quarantine(relative, exc.problems[0])
        else:
            self.outcome["decodable"] += 1

    def _quarantine(self, relative: str, reason: str) -> None:
        self.outcome["quarantined"] += 1
        self.skipped.append((relative, reason))

    def report(self) -> dict[str, Any]:
        reasons = Counter(reason_kind(r) for _, r in self.skipped)
        return {
            "files": sum(self.kinds.values()),
            "kinds": {k: self.kinds[k] for k in KINDS},
            **{
                k: self.outcome[k]
                for k in ("decodable", "quarantined", "excluded-by-filters")
            },
            **{name: dict(c.most_common()) for name, c in self.fields.items()},
            "quarantine-reasons": dict(reasons.most_common()),
            "quarantined-files": [[p, short_reason(r)] for p, r in self.skipped],
        }


def inventory(site: SiteConfig, run: FedwardConfig) -> dict[str, Any]:
    """Counts of what ``site``'s folder holds, each file decoded as for training.

    Decoded images go to the site's decode cache, so training after labelling
    starts from it, and unusable files to ``quarantine.csv``, as
    :func:`fedward.data.load.load_site` does. Nothing per file is returned but
    the relative paths of quarantined files, with the kind of their reason.

    Raises
    ------
    DataError
        If the folder does not exist or holds no files.
    """
    root = Path(site.data_path)
    if not root.is_dir():
        raise DataError(f"data folder does not exist: {root}")
    files = list_files(root)
    if not files:
        raise DataError(f"{root} holds no files")
    pre = preprocess_for(site, run)
    state = writable_state(site.state_dir)
    cache = DecodeCache(state / "cache") if state is not None else None
    tally = _Tally()
    for path in files:
        tally.add(path, path.relative_to(root).as_posix(), pre, cache)
    if cache is not None:
        cache.flush()
    report = tally.report()
    report["quarantine-report"] = None
    if state is not None:
        write_quarantine(state / QUARANTINE_FILE, tally.skipped)
        report["quarantine-report"] = str(state / QUARANTINE_FILE)
    report["labels"] = HOW_TO_LABEL
    return report
