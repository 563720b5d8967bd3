"""A hospital's data through its configured source, with quarantine and cache.

Also where a site's own ``site.toml`` is read, since only here are the
registered source names known. Sources are registered in
:mod:`fedward.data.sources`; every one yields the same item shape.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import SiteSplits
from fedward.data.decode import DecodeCache, Preprocess
from fedward.data.dicom import DicomOptions, parse_select
from fedward.data.discovery import hospital_folders, is_per_hospital
from fedward.data.sources import get_source, list_sources
from fedward.errors import DataError

logger = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.csv"
SITE_FILE = "site.toml"
LABELS_FILE = "labels.csv"


def preprocess_for(site: SiteConfig, run: FedwardConfig) -> Preprocess:
    """The model's input shape from the run, DICOM handling from the site."""
    return Preprocess(
        in_channels=run.in_channels,
        image_size=run.image_size,
        dicom=DicomOptions(
            frame=site.frame,
            window_center=site.window_center,
            window_width=site.window_width,
            select=parse_select(site.select),
        ),
    )


def load_site(site: SiteConfig, run: FedwardConfig) -> SiteSplits:
    """A hospital's splits from its configured source.

    Unusable files are written to ``quarantine.csv`` in the site's state folder
    (path relative to the data, reason).

    Raises
    ------
    DataError
        If the source fails, or more than ``max-unusable-fraction`` of the files
        are unusable.
    """
    loader = get_source(site.source)
    state = writable_state(site.state_dir)
    cache = DecodeCache(state / "cache") if state is not None else None
    splits = loader(site, run, preprocess_for(site, run), cache)
    skipped = splits.skipped()
    if state is not None:
        write_quarantine(state / QUARANTINE_FILE, skipped)
    total = splits.total() + len(skipped)
    if total and len(skipped) / total > site.max_unusable_fraction:
        raise DataError(
            f"{site.name}: {len(skipped)} of {total} files are unusable, more than "
            f"max-unusable-fraction {site.max_unusable_fraction:g}; see "
            f"{state / QUARANTINE_FILE if state else 'the log'}"
        )
    if cache is not None:
        logger.info(
            "%s: %d images (%d decoded, %d from cache)",
            site.name,
            splits.total(),
            cache.misses,
            cache.hits,
        )
    return splits


def writable_state(state: Path | None) -> Path | None:
    """The state folder if it can be created and written, else None (with a warning)."""
    if state is None:
        return None
    try:
        state.mkdir(parents=True, exist_ok=True)
        probe = state / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        logger.warning(
            "cannot write to %s (%s): no decode cache or quarantine report; "
            "set cache-dir in site.toml",
            state,
            exc.strerror,
        )
        return None
    return state


def write_quarantine(path: Path, skipped: list[tuple[str, str]]) -> None:
    """The quarantine report: one row per unusable file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "reason"])
        writer.writerows(skipped)


def read_site(path: Path) -> SiteConfig:
    """A hospital's ``site.toml``, checked, with its source among those registered.

    Raises
    ------
    ConfigError
        Listing every problem of the file at once.
    """
    return SiteConfig.from_site_file(path, sources=list_sources())


def site_for_folder(folder: Path, name: str = "") -> SiteConfig:
    """A hospital folder's site config: its ``site.toml``, else guessed.

    A folder with ``labels.csv`` is DICOM labelled by that file; any other is read
    as class folders (of pictures or DICOM files).
    """
    if (folder / SITE_FILE).is_file():
        site = read_site(folder / SITE_FILE)
    elif (folder / LABELS_FILE).is_file():
        site = SiteConfig(
            source="dicom", data_path=str(folder), labels_csv=str(folder / LABELS_FILE)
        )
    else:
        site = SiteConfig(source="folders", data_path=str(folder))
    if name or not site.site_name:
        site = site.replace(site_name=name or folder.name)
    return site


def site_configs(paths: list[Path]) -> list[SiteConfig]:
    """Sites named by paths: ``site.toml`` files, site folders, folders of sites.

    Raises
    ------
    DataError
        If a path does not exist.
    """
    sites = []
    for path in paths:
        if path.is_file():
            sites.append(read_site(path))
        elif path.is_dir() and is_per_hospital(path):
            sites.extend(site_for_folder(f) for f in hospital_folders(path))
        elif path.is_dir():
            sites.append(site_for_folder(path))
        else:
            raise DataError(f"no such site folder or file: {path}")
    return sites
