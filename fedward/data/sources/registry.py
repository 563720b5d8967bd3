"""The data-source registry: adding a source is one module with one function.

Every source turns a hospital's :class:`SiteConfig` into splits of the same
item shape (uint8 images, integer labels, site-local paths).
"""

from __future__ import annotations

from collections.abc import Callable

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import SiteSplits
from fedward.data.decode import DecodeCache, Preprocess
from fedward.errors import DataError

SourceLoader = Callable[
    [SiteConfig, FedwardConfig, Preprocess, DecodeCache | None], SiteSplits
]
_SOURCES: dict[str, SourceLoader] = {}


def register_source(name: str) -> Callable[[SourceLoader], SourceLoader]:
    """Register ``loader(site, run, pre, cache) -> SiteSplits`` under ``name``."""

    def decorator(loader: SourceLoader) -> SourceLoader:
        if name in _SOURCES:
            raise ValueError(f"source '{name}' is registered twice")
        _SOURCES[name] = loader
        return loader

    return decorator


def get_source(name: str) -> SourceLoader:
    """The loader registered under ``name``.

    Raises
    ------
    DataError
        If no source has that name.
    """
    if name not in _SOURCES:
        known = ", ".join(sorted(_SOURCES))
        raise DataError(f"unknown data source '{name}'; one of {known}")
    return _SOURCES[name]


def list_sources() -> list[str]:
    """Registered source names."""
    return sorted(_SOURCES)
