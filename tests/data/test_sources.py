import csv
import re
from pathlib import Path

import numpy as np
import pytest

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import SiteSplits
from fedward.data.decode import DecodeCache, Preprocess
from fedward.data.load import QUARANTINE_FILE, load_site, read_site, site_for_folder
from fedward.errors import ConfigError, DataError
from fedward.simulation.demo import write_demo
from tests.conftest import WriteFolder

RUN = FedwardConfig(image_size=32, val_fraction=0.2, test_fraction=0.2)


@pytest.fixture
def dicom_site(tmp_path: Path) -> Path:
    write_demo(tmp_path / "demo", 1, seed=0, max_images=12, fmt="dicom")
    return tmp_path / "demo" / "hospital-1"


def relabel(site: Path, key: str) -> Path:
    """A labels CSV keyed by ``key`` instead of the SOP instance UID."""
    import pydicom

    rows = []
    for path in sorted(site.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        value = path.relative_to(site).as_posix() if key == "path" else ds.get(key)
        rows.append({key: value, "label": path.parent.name})
    out = site.parent / f"labels-{key}.csv"
    column = {"SeriesInstanceUID": "series_instance_uid", "path": "path"}[key]
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([column, "label"])
        writer.writerows([[r[key], r["label"]] for r in rows])
    return out


def test_folder_with_labels_csv_is_read_as_labelled_dicom(dicom_site: Path) -> None:
    site = site_for_folder(dicom_site)

    splits = load_site(site, RUN)

    assert site.source == "dicom"
    assert splits.total() == 12
    assert splits.train.images.shape[1:] == (3, 32, 32)


@pytest.mark.parametrize("key", ["SeriesInstanceUID", "path"])
def test_labels_may_be_keyed_by_series_or_path(dicom_site: Path, key: str) -> None:
    site = SiteConfig(
        source="dicom",
        data_path=str(dicom_site),
        labels_csv=str(relabel(dicom_site, key)),
    )

    splits = load_site(site, RUN)

    by_csv = sorted(zip(splits.train.paths, splits.train.labels.tolist(), strict=True))
    assert splits.total() == 12
    assert all(Path(p).parent.name == ["normal", "opacity"][y] for p, y in by_csv)


def test_unknown_labels_are_all_named(dicom_site: Path, tmp_path: Path) -> None:
    labels = tmp_path / "bad.csv"
    labels.write_text("sop_instance_uid,label\n1.2.3,pneumonia\n1.2.4,fracture\n")
    site = SiteConfig(source="dicom", data_path=str(dicom_site), labels_csv=str(labels))

    with pytest.raises(DataError, match=r"\['fracture', 'pneumonia'\] are not among"):
        load_site(site, RUN)


def test_quarantine_report_and_unusable_share(dicom_site: Path) -> None:
    broken = sorted(dicom_site.rglob("*.dcm"))[:3]
    for path in broken:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # cut off mid-pixel data
    (dicom_site / "notes.txt").write_text("not an image")
    site = site_for_folder(dicom_site)

    splits = load_site(site, RUN)

    report = list(csv.DictReader((dicom_site / ".fedward" / QUARANTINE_FILE).open()))
    assert splits.total() == 9
    assert {r["path"] for r in report} == {
        *(p.relative_to(dicom_site).as_posix() for p in broken),
        "notes.txt",
    }
    assert all(r["reason"] for r in report)
    strict = SiteConfig(**{**site.__dict__, "max_unusable_fraction": 0.2})
    with pytest.raises(DataError, match="4 of 13 files are unusable"):
        load_site(strict, RUN)


def test_cache_skips_decoding_on_the_second_load(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    root = write_folder(per_class=4)
    cache = DecodeCache(tmp_path / "cache")
    pre = Preprocess(1, 24)
    from fedward.data.sources.folders import load_folder

    first = load_folder(root, ["normal", "opacity"], pre, cache)
    second = load_folder(root, ["normal", "opacity"], pre, cache)
    load_folder(root, ["normal", "opacity"], Preprocess(1, 32), cache)

    assert (cache.misses, cache.hits) == (16, 8)  # a new size is a new key
    assert np.array_equal(first.images.numpy(), second.images.numpy())


def test_a_damaged_cache_pack_is_decoded_again(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    root = write_folder(per_class=3)
    pre = Preprocess(1, 24)
    from fedward.data.sources.folders import load_folder

    first = load_folder(root, ["normal", "opacity"], pre, DecodeCache(tmp_path))
    (stack,) = tmp_path.rglob("pack-*.npy")  # one pack for the whole load
    stack.write_bytes(stack.read_bytes()[:100])  # truncated
    cache = DecodeCache(tmp_path)
    again = load_folder(root, ["normal", "opacity"], pre, cache)

    assert (cache.misses, cache.hits) == (6, 0)
    assert np.array_equal(first.images.numpy(), again.images.numpy())


def test_npz_in_the_medmnist_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", 20), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1))
    np.savez(tmp_path / "pneumoniamnist.npz", allow_pickle=False, **arrays)
    site = SiteConfig(source="npz", data_path=str(tmp_path / "pneumoniamnist.npz"))

    splits = load_site(site, RUN)

    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 4, 6)
    assert splits.train.images.shape[1:] == (3, 32, 32)
    assert splits.test.labels.tolist() == arrays["test_labels"].reshape(-1).tolist()


def test_site_file_paths_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text(
        'site-name = "st-mary"\nsource = "dicom"\ndata-path = "images"\n'
        'labels-csv = "labels.csv"\nselect = "Modality=CR"\n'
    )

    site = SiteConfig.from_site_file(tmp_path / "site.toml")

    assert site.data_path == str(tmp_path / "images")
    assert site.labels_csv == str(tmp_path / "labels.csv")
    assert site.name == "st-mary"


def test_site_config_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        SiteConfig.from_mapping(
            {"source": "dicomweb", "frame": -3, "dicomweb-user": "u"}
        )

    text = "\n".join(info.value.problems)
    assert "needs 'dicomweb-url'" in text
    assert "needs 'labels-csv'" in text
    assert "'frame' = -3 is out of range" in text
    assert "needs 'dicomweb-password-file'" in text


def test_the_example_site_file_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]

    example = root / "deploy" / "site.example.toml"
    site = read_site(example)

    assert site.source == "dicom"
    assert site.select.startswith("Modality=")
    text = example.read_text()
    for key in (name.replace("_", "-") for name in SiteConfig.model_fields):
        assert re.search(rf"^(# )?{key} = ", text, re.MULTILINE), key


def test_a_source_module_registers_itself_and_config_accepts_it(tmp_path: Path) -> None:
    from fedward.data.sources.registry import _SOURCES, list_sources, register_source

    @register_source("test-only")
    def loader(
        site: SiteConfig, run: FedwardConfig, pre: Preprocess, cache: DecodeCache | None
    ) -> SiteSplits:
        raise NotImplementedError

    values = {"source": "test-only", "data-path": "x"}
    try:
        site = SiteConfig.from_mapping(values, context={"sources": list_sources()})
        assert "test-only" in list_sources()
        assert site.source == "test-only"
    finally:
        del _SOURCES["test-only"]
    with pytest.raises(ConfigError, match="'source' must be one of dicom, dicomweb"):
        SiteConfig.from_mapping(values, context={"sources": list_sources()})
    (tmp_path / "site.toml").write_text('source = "test-only"\ndata-path = "x"\n')
    with pytest.raises(ConfigError, match="'source' must be one of dicom, dicomweb"):
        read_site(tmp_path / "site.toml")


def test_an_unwritable_state_folder_only_warns(
    write_folder: WriteFolder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    site = SiteConfig(
        data_path=str(write_folder(per_class=4)), cache_dir=str(blocker / "x")
    )

    splits = load_site(site, RUN)

    assert splits.total() == 8
    assert "no decode cache or quarantine report" in caplog.text


def test_a_full_disk_does_not_stop_decoding(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    from fedward.data.sources.folders import load_folder

    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    cache = DecodeCache(blocker / "cache")  # every write fails

    data = load_folder(
        write_folder(per_class=3), ["normal", "opacity"], Preprocess(1, 24), cache
    )

    assert len(data) == 6
    assert cache.write_failed
