"""The synthetic demo as DICOM, with fake patient data in the headers.

Each hospital stores its images the way a different scanner would: hospital 1
as unsigned 12-bit MONOCHROME2, hospital 2 as signed 16-bit with a rescale
intercept, hospital 3 as MONOCHROME1 (inverted), all with a window that maps
them back to the demo's grey levels. The patient names, IDs, birth dates,
accession numbers and institution names are invented and marked FAKE, so tests
can check that none of them leaves a site.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")


def fake_phi(hospital: int, image: int) -> dict[str, str]:
    """The invented identifying values of one demo image."""
    return {
        "PatientName": f"FAKE^PATIENT^H{hospital + 1}N{image:04d}",
        "PatientID": f"FAKEID-{hospital + 1}-{image:05d}",
        "PatientBirthDate": f"19{40 + (image % 50):02d}0{1 + image % 9}1{image % 10}",
        "AccessionNumber": f"FAKEACC{hospital + 1}{image:06d}",
        "InstitutionName": f"FAKE GENERAL HOSPITAL {hospital + 1}",
    }


def _pixels(pixels: np.ndarray, hospital: int, ds: Dataset) -> bytes:
    values = pixels.astype(np.int32) * 16  # 8-bit grey levels as 12-bit values
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept = 0, 1, 0
    if hospital % 3 == 1:  # signed storage, shifted back by the intercept
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.RescaleIntercept = 2048
        return (values - 2048).astype(np.int16).tobytes()
    if hospital % 3 == 2:  # MONOCHROME1: low values are bright
        ds.PhotometricInterpretation = "MONOCHROME1"
        return (4080 - values).astype(np.uint16).tobytes()
    return values.astype(np.uint16).tobytes()


def write_dicom(
    path: Path, pixels: np.ndarray, hospital: int, image: int, seed: int
) -> str:
    """Write one image as a CR DICOM file; return its SOP instance UID."""
    entropy = [str(seed), str(hospital), str(image)]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[*entropy, "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = str(meta.MediaStorageSOPInstanceUID)
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*entropy, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*entropy, "series"])
    for keyword, value in fake_phi(hospital, image).items():
        setattr(ds, keyword, value)
    ds.PatientSex = "O"
    ds.StudyDate = "20260101"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.SeriesDescription = "CHEST PA (SYNTHETIC)"
    ds.Manufacturer = f"Synthetic scanner {hospital + 1}"
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = pixels.shape
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = _pixels(pixels, hospital, ds)
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)
