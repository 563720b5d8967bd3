"""Which patient each image belongs to, known only at the site.

A DICOM file names its patient (``PatientID``). The identifier is read from the
header, salted and hashed at once, and only the digest is kept in memory: it
groups a patient's images for patient-level differential privacy and is never
logged, written or sent. Picture files (PNG, JPEG) and arrays name no patient.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path

from fedward.data.dicom import is_dicom, read_dataset
from fedward.errors import DataError

logger = logging.getLogger(__name__)


def patient_digest(patient_id: str, salt: bytes) -> str:
    """A salted SHA-256 of a patient identifier (hex)."""
    return hashlib.sha256(salt + patient_id.strip().encode()).hexdigest()


def patient_groups(paths: Sequence[str], salt: bytes | None = None) -> list[str] | None:
    """The hashed patient of each image, or ``None`` if any image names none.

    Parameters
    ----------
    paths
        The site-local files of a split (``DecodedImages.paths``).
    salt
        Mixed into every digest; a fresh random salt when ``None``, so digests
        are not comparable across processes (or sites).
    """
    salt = secrets.token_bytes(16) if salt is None else salt
    groups = []
    for name in paths:
        path = Path(name)
        if not path.is_file() or not is_dicom(path):
            return None
        try:
            patient = str(read_dataset(path).get("PatientID", "") or "").strip()
        except DataError:
            return None
        if not patient:
            return None
        groups.append(patient_digest(patient, salt))
    return groups
