import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from fedward.data.datasets import collect
from fedward.data.decode import NotSelected, Preprocess, decode_file
from fedward.data.dicom import DicomOptions, decode_dicom, is_dicom, parse_select
from fedward.errors import DataError
from tests.dicom_files import FOLDERS, all_files, shipped

PRE = Preprocess(in_channels=1, image_size=32)


def write(path: Path, pixels: np.ndarray, **tags: object) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    signed = pixels.dtype == np.int16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(signed)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


RAMP = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (100, 1))


@pytest.mark.parametrize("folder", FOLDERS, ids=["pydicom", "pydicom-data"])
def test_every_shipped_file_decodes_or_is_quarantined_with_a_reason(
    folder: Path,
) -> None:
    files = all_files(folder)
    pre = Preprocess(in_channels=3, image_size=48)

    data = collect([(f, 0) for f in files], folder, pre)

    assert len(data) + len(data.skipped) + data.excluded == len(files)
    assert data.images.shape[1:] == (3, 48, 48)
    assert torch.isfinite(data.images.float()).all()
    assert all(reason.strip() for _, reason in data.skipped)
    assert len(data) >= 0.5 * sum(f.suffix == ".dcm" for f in files)


def test_shipped_set_is_the_expected_size() -> None:
    assert sum(len(all_files(f)) for f in FOLDERS) >= 150


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    mono2 = decode_dicom(write(tmp_path / "a", RAMP), DicomOptions())
    mono1 = decode_dicom(
        write(tmp_path / "b", RAMP, PhotometricInterpretation="MONOCHROME1"),
        DicomOptions(),
    )

    assert mono2[0, 0] == 0.0
    assert mono2[0, -1] == 1.0
    assert np.allclose(mono1, 1.0 - mono2)


def test_rescale_then_configured_window(tmp_path: Path) -> None:
    # stored 0..990, slope 2 and intercept -1000 give modality values -1000..980
    path = write(tmp_path / "ct", RAMP, RescaleSlope=2, RescaleIntercept=-1000)

    out = decode_dicom(path, DicomOptions(window_center=0.0, window_width=400.0))

    modality = RAMP[0].astype(float) * 2 - 1000
    assert np.all(out[0][modality <= -200] == 0.0)
    assert np.all(out[0][modality >= 200] == 1.0)
    middle = out[0][(modality > -200) & (modality < 200)]
    assert np.all(np.diff(middle) > 0)


def test_window_from_the_file_is_applied(tmp_path: Path) -> None:
    path = write(tmp_path / "w", RAMP, WindowCenter=500, WindowWidth=200)

    out = decode_dicom(path, DicomOptions())

    assert out[0, 0] == 0.0
    assert out[0, 40] == 0.0  # 400 is the window's lower edge
    assert 0.4 < out[0, 50] < 0.6
    assert out[0, 70] == 1.0


def test_signed_pixels_use_their_sign(tmp_path: Path) -> None:
    signed = (RAMP.astype(np.int32) - 500).astype(np.int16)

    out = decode_dicom(write(tmp_path / "s", signed), DicomOptions())

    assert out[0, 0] == 0.0
    assert out[0, -1] == 1.0
    assert np.all(np.diff(out[0]) > 0)


def test_ybr_and_rgb_versions_of_one_image_agree() -> None:
    rgb = decode_file(shipped("SC_rgb.dcm"), Preprocess(3, 32))
    ybr = decode_file(shipped("SC_ybr_full_uncompressed.dcm"), Preprocess(3, 32))

    assert rgb.shape == ybr.shape == (3, 32, 32)
    assert (rgb.float() - ybr.float()).abs().max() <= 3


def test_lossless_jpeg2000_matches_the_uncompressed_file() -> None:
    raw = decode_file(shipped("RG1_UNCR.dcm"), PRE)
    j2k = decode_file(shipped("RG1_J2KR.dcm"), PRE)

    assert torch.equal(raw, j2k)


def test_frames_of_a_multiframe_file_are_selectable() -> None:
    path = shipped("SC_rgb_2frame.dcm")

    first = decode_dicom(path, DicomOptions(frame=0))
    second = decode_dicom(path, DicomOptions(frame=1))

    assert first.shape == second.shape
    assert not np.array_equal(first, second)
    with pytest.raises(DataError, match="frame 5 asked for, the image has 2"):
        decode_dicom(path, DicomOptions(frame=5))


def test_dicom_is_found_by_content_not_extension(tmp_path: Path) -> None:
    renamed = tmp_path / "IM0001"
    shutil.copy(shipped("CT_small.dcm"), renamed)
    (tmp_path / "fake.dcm").write_text("hello")

    assert is_dicom(renamed)
    assert not is_dicom(tmp_path / "fake.dcm")
    assert decode_file(renamed, PRE).shape == (1, 32, 32)


def test_truncated_and_pixel_less_files_give_reasons(tmp_path: Path) -> None:
    full = shipped("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(full[: len(full) - 5000])
    files = [tmp_path / "cut.dcm", shipped("rtplan.dcm")]

    data = collect([(f, 0) for f in files], tmp_path, PRE)

    reasons = dict(data.skipped)
    assert reasons["cut.dcm"].startswith("undecodable")
    assert reasons["rtplan.dcm"] == "no pixel data"


def test_header_filters_select_series() -> None:
    pre = Preprocess(1, 32, DicomOptions(select=parse_select("Modality=MR|DX")))

    assert decode_file(shipped("MR_small.dcm"), pre).shape == (1, 32, 32)
    with pytest.raises(NotSelected):
        decode_file(shipped("CT_small.dcm"), pre)


def test_bad_header_filters_are_named() -> None:
    with pytest.raises(DataError, match="no DICOM keyword: 'Modallity'"):
        parse_select("Modallity=CT")
    with pytest.raises(DataError, match="not Keyword=pattern"):
        parse_select("Modality")
