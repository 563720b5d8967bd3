from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from fedward.data.decode import Preprocess
from fedward.data.sources.folders import load_class_folders, load_folder
from fedward.data.transforms import RandomAugment, ScaleToUnit
from fedward.errors import DataError
from tests.conftest import WriteFolder

CLASSES = ["normal", "opacity"]


def load(root: Path, channels: int = 3) -> object:
    return load_class_folders(
        root,
        CLASSES,
        pre=Preprocess(channels, 24),
        val_fraction=0.2,
        test_fraction=0.2,
        seed=1,
    )


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("channels", [1, 3])
def test_grayscale_and_rgb_files_load_at_the_model_shape(
    write_folder: WriteFolder, mode: str, channels: int
) -> None:
    root = write_folder(mode=mode, per_class=5)

    data = load_folder(root, CLASSES, Preprocess(channels, 24))

    assert data.images.shape == (10, channels, 24, 24)
    assert data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0] * 5 + [1] * 5


def test_seeded_split_is_stratified_and_repeatable(write_folder: WriteFolder) -> None:
    root = write_folder(per_class=10)

    first, second = load(root), load(root)

    assert first.test.class_counts(2) == [2, 2]  # type: ignore[attr-defined]
    assert first.val.class_counts(2) == [2, 2]  # type: ignore[attr-defined]
    assert first.train.paths == second.train.paths  # type: ignore[attr-defined]
    all_paths = first.train.paths + first.val.paths + first.test.paths  # type: ignore[attr-defined]
    assert len(set(all_paths)) == 20


def test_split_folders_are_used_when_present(write_folder: WriteFolder) -> None:
    root = write_folder("site/train", per_class=4).parent
    write_folder("site/test", per_class=2)

    splits = load(root)

    assert len(splits.train) == 8  # type: ignore[attr-defined]
    assert len(splits.test) == 4  # type: ignore[attr-defined]
    assert len(splits.val) == 0  # type: ignore[attr-defined]


def test_broken_and_foreign_files_are_skipped_and_counted(
    write_folder: WriteFolder, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_folder(per_class=4)
    (root / "normal" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "opacity" / "notes.txt").write_text("not an image")

    data = load_folder(root, CLASSES, Preprocess(1, 24))

    assert len(data) == 8
    assert sorted(Path(p).name for p, _ in data.skipped) == ["broken.png", "notes.txt"]
    reasons = dict(data.skipped)
    assert reasons["opacity/notes.txt"].startswith("not an image or DICOM file")
    assert reasons["normal/broken.png"].startswith("does not decode")
    assert caplog.text.count("skipped") >= 2


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_single_class_is_refused(write_folder: WriteFolder) -> None:
    root = write_folder(classes=("normal",))

    with pytest.raises(DataError, match="at least two classes"):
        load(root)


def test_class_folder_without_usable_image_is_refused(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    root = write_folder(classes=("normal", "opacity", "other"))
    for path in (root / "other").iterdir():
        path.write_bytes(b"garbage")

    with pytest.raises(DataError, match=r"\['other'\] hold no usable image"):
        load_class_folders(
            root,
            ["normal", "opacity", "other"],
            pre=Preprocess(1, 24),
            val_fraction=0.0,
            test_fraction=0.2,
            seed=0,
        )


def test_unknown_class_folder_is_refused(write_folder: WriteFolder) -> None:
    root = write_folder(classes=("normal", "opacity", "mystery"))

    with pytest.raises(DataError, match="mystery"):
        load(root)


def test_scaling_maps_uint8_to_unit_interval() -> None:
    image = torch.tensor([[[0, 51, 255]]], dtype=torch.uint8)

    out = ScaleToUnit()(image)

    assert out.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_augmentation_changes_pixels_keeps_shape_and_range() -> None:
    torch.manual_seed(0)
    image = torch.zeros(1, 32, 32, dtype=torch.uint8)
    image[:, 8:24, 4:12] = 255
    augment = RandomAugment(shear=0.2, zoom=0.2, horizontal_flip=True)

    outs = [augment(image) for _ in range(8)]

    assert all(o.shape == (1, 32, 32) for o in outs)
    assert all(float(o.min()) >= 0.0 and float(o.max()) <= 1.0 for o in outs)
    assert any(not torch.equal(o, ScaleToUnit()(image)) for o in outs)


def test_augmentation_is_the_seeds_shear_zoom_and_flip_in_torchvision_v2() -> None:
    augment = RandomAugment(shear=0.2, zoom=0.2, horizontal_flip=True)

    affine, flip = augment.augment.transforms
    assert isinstance(affine, v2.RandomAffine)
    assert affine.shear == pytest.approx([-11.459, 11.459], abs=1e-3)
    assert affine.scale == pytest.approx((0.8, 1.2))
    assert affine.degrees == [0.0, 0.0]
    assert isinstance(flip, v2.RandomHorizontalFlip)
    assert flip.p == 0.5


def test_without_shear_zoom_and_flip_augmentation_is_identity() -> None:
    image = torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8)

    out = RandomAugment(shear=0.0, zoom=0.0, horizontal_flip=False)(image)

    assert torch.equal(out, ScaleToUnit()(image))


def test_the_state_folder_does_not_make_a_pooled_set_per_hospital(
    write_folder: WriteFolder,
) -> None:
    from fedward.data.discovery import data_class_names, is_per_hospital

    root = write_folder(per_class=1)
    (root / ".fedward" / "cache").mkdir(parents=True)

    assert not is_per_hospital(root)
    assert data_class_names(root) == ["normal", "opacity"]
