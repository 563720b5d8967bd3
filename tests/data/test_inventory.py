from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import JPEG2000Lossless

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.decode import DecodeCache
from fedward.data.inventory import has_labels, header_codes, inventory
from fedward.data.load import preprocess_for
from tests.conftest import WriteFolder
from tests.dicom_files import shipped


def test_loose_files_have_no_labels(tmp_path: Path) -> None:
    (tmp_path / "IM0001").write_bytes(shipped("CT_small.dcm").read_bytes())
    (tmp_path / "empty-folder").mkdir()

    assert not has_labels(SiteConfig(data_path=str(tmp_path)))
    assert not has_labels(SiteConfig(source="dicom", data_path=str(tmp_path)))


def test_class_folders_a_labels_csv_or_an_archive_are_labels(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    folders = write_folder(per_class=1)

    assert has_labels(SiteConfig(data_path=str(folders)))
    assert has_labels(
        SiteConfig(source="dicom", data_path=str(tmp_path), labels_csv="labels.csv")
    )
    assert has_labels(SiteConfig(source="npz", data_path=str(tmp_path / "a.npz")))


def test_header_codes_show_codes_and_numbers_only() -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PatientName, ds.PatientID = "DOE^JANE", "ID-0042"
    ds.Modality = "Jane Doe"  # free text where a code belongs
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns, ds.BitsStored = 512, 256, 12

    codes = header_codes(ds)

    assert codes == {
        "modality": "(not a code)",
        "photometric-interpretation": "MONOCHROME2",
        "image-size": "512x256",
        "bits-stored": "12",
        "frames": "1",
        "transfer-syntax": "JPEG 2000 Image Compression (Lossless Only)",
    }


def test_inventory_decodes_as_training_and_writes_the_quarantine_report(
    tmp_path: Path,
) -> None:
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        (tmp_path / name).write_bytes(shipped(name).read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    site = SiteConfig(data_path=str(tmp_path))

    inv = inventory(site, FedwardConfig(image_size=32))

    assert inv["files"] == 4
    assert inv["kinds"] == {"DICOM": 3, "picture": 0, "other": 1, "unreadable": 0}
    assert (inv["decodable"], inv["quarantined"]) == (2, 2)
    assert inv["modality"] == {"CT": 1, "MR": 1, "RTPLAN": 1}
    assert inv["image-size"] == {"128x128": 1, "64x64": 1, "(none)": 1}
    assert ["rtplan.dcm", "no pixel data"] in inv["quarantined-files"]
    report = (tmp_path / ".fedward" / "quarantine.csv").read_text()
    assert "rtplan.dcm,no pixel data" in report
    # the two decodable files are in the decode cache that training reads
    cache = DecodeCache(tmp_path / ".fedward" / "cache")
    pre = preprocess_for(site, FedwardConfig(image_size=32))
    for name in ("CT_small.dcm", "MR_small.dcm"):
        assert cache.decode(tmp_path / name, pre).shape == (3, 32, 32)
    assert (cache.hits, cache.misses) == (2, 0)
    assert inv["quarantine-reasons"] == {
        "no pixel data": 1,
        "not an image or DICOM file": 1,
    }
