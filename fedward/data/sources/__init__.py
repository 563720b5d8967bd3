"""Data sources: one module per kind of hospital data, registered by name.

Importing this package registers the built-in sources (``folders``, ``dicom``,
``dicomweb``, ``npz``); a new source is one module with one
:func:`register_source` function.
"""

from fedward.data.sources import dicom, dicomweb, folders, npz
from fedward.data.sources.registry import get_source, list_sources, register_source

__all__ = [
    "dicom",
    "dicomweb",
    "folders",
    "get_source",
    "list_sources",
    "npz",
    "register_source",
]
