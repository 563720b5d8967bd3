from pathlib import Path

import pydicom
import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

from fedward.config import FedwardConfig
from fedward.data.datasets import DecodedImages
from fedward.data.load import load_site, site_for_folder
from fedward.data.patients import patient_groups
from fedward.data.transforms import ScaleToUnit
from fedward.errors import PrivacyError
from fedward.learning.dp_sgd import PrivacyUnits, check_private_model, train_dp_sgd
from fedward.learning.loops import seed_everything
from fedward.learning.privacy import Mechanism, RoundPlan
from fedward.models import get_model
from fedward.models.checkpoint import ModelCard
from fedward.models.groupnorm import (
    GROUPNORM_VARIANTS,
    build_run_model,
    run_model_name,
)
from fedward.simulation.demo import write_demo


def images(n: int, size: int = 32) -> DecodedImages:
    gen = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 255, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    return DecodedImages(pixels, torch.arange(n) % 2, [f"img-{i}" for i in range(n)])


@pytest.mark.parametrize("name", ["seed-cnn-bn", "resnet18", "densenet121"])
def test_batchnorm_models_become_groupnorm_when_the_run_asks_for_dp(
    name: str,
) -> None:
    private = FedwardConfig(model=name, dp=True, dp_noise_multiplier=1.0)
    plain = get_model(name, num_classes=2, image_size=32)

    model = build_run_model(private.replace(image_size=32))

    gn = GROUPNORM_VARIANTS[name]  # seed-cnn-bn -> seed-cnn-gn
    assert gn.endswith("-gn")
    assert run_model_name(private) == gn
    assert ModelCard.of_run(private, 1).model == gn  # predict rebuilds it
    assert run_model_name(private.replace(dp=False)) == name
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert ModuleValidator.validate(model, strict=False) == []
    kept = {k for k in plain.state_dict() if "running_" not in k and "batches" not in k}
    assert set(model.state_dict()) == kept  # same parameter names
    with pytest.raises(PrivacyError, match="cannot be trained with DP-SGD"):
        check_private_model(plain)


@pytest.mark.parametrize("name", ["seed-cnn", "resnet18", "densenet121"])
def test_every_model_trains_privately(name: str) -> None:
    config = FedwardConfig(model=name, dp=True, dp_noise_multiplier=1.0, image_size=32)
    model = build_run_model(config)
    keys = list(model.state_dict())
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    plan = RoundPlan(Mechanism(1.0, 1.0, 1), 1e-3, 1.0, "image", 2, 1)

    result, history = train_dp_sgd(
        model,
        PrivacyUnits(images(2), ScaleToUnit()),
        plan,
        epochs=1,
        batch_size=2,
        learning_rate=1e-3,
        device=torch.device("cpu"),
        accountant="rdp",
    )

    state = model.state_dict()
    assert history == [Mechanism(1.0, 1.0, 1)]
    assert list(state) == keys  # Opacus' wrappers and hooks are gone
    assert all(torch.isfinite(v).all() for v in state.values())
    assert any(not torch.equal(sent[k], v) for k, v in state.items())
    assert result.num_examples == 2


def test_a_patient_is_one_privacy_unit(tmp_path: Path) -> None:
    write_demo(tmp_path, 1, seed=0, max_images=12, fmt="dicom")
    folder = tmp_path / "hospital-1"
    files = sorted(p for p in folder.rglob("*.dcm"))
    for i, path in enumerate(files):  # three images per patient
        ds = pydicom.dcmread(path)
        ds.PatientID = f"PAT-{i // 3}"
        ds.save_as(path)
    config = FedwardConfig(image_size=32, val_fraction=0.0, test_fraction=0.1)
    train = load_site(site_for_folder(folder), config).train

    groups = patient_groups(train.paths)
    units = PrivacyUnits(train, lambda image: image, groups, seed=0)

    assert groups is not None
    assert len(set(groups)) == len(units) < len(train)
    assert units.unit == "patient"
    assert all("PAT" not in g for g in groups)  # only salted digests are kept
    patient = sorted(set(groups))[0]
    theirs = {i for i, g in enumerate(groups) if g == patient}
    draws = [units[0][0] for _ in range(20)]
    drawn = {
        i
        for image in draws
        for i in range(len(train))
        if torch.equal(train.images[i], image)
    }
    assert drawn <= theirs  # every draw is one of that patient's images
    assert len(drawn) > 1  # and not always the same one
    assert patient_groups([*train.paths[:-1], "/no/such/file.png"]) is None


def test_the_noise_and_sampling_do_not_follow_the_run_seed() -> None:
    """The server knows the run's seed; noise it could regenerate protects nothing."""
    config = FedwardConfig(dp=True, dp_noise_multiplier=1.0, image_size=32)
    plan = RoundPlan(Mechanism(1.0, 0.5, 2), 1e-3, 1.0, "image", 8, 2)
    trained = []
    for _ in range(2):
        seed_everything(0)  # what Site.fit does with the run's seed
        model = build_run_model(config)
        train_dp_sgd(
            model,
            PrivacyUnits(images(8), ScaleToUnit()),
            plan,
            epochs=1,
            batch_size=4,
            learning_rate=1e-3,
            device=torch.device("cpu"),
            accountant="rdp",
        )
        trained.append(model.state_dict())

    assert any(not torch.equal(trained[0][k], trained[1][k]) for k in trained[0])


def test_fedprox_under_dp_pulls_towards_the_weights_sent() -> None:
    """The proximal term is added after the noise; a strong one keeps w near w0."""

    def drift(mu: float) -> float:
        torch.manual_seed(0)
        model = get_model("seed-cnn", num_classes=2, image_size=32)
        sent = [p.detach().clone() for p in model.parameters()]
        train_dp_sgd(
            model,
            PrivacyUnits(images(32), ScaleToUnit()),
            RoundPlan(Mechanism(1.0, 0.5, 10), 1e-3, 1.0, "image", 32, 2),
            epochs=5,
            batch_size=16,
            learning_rate=1e-3,
            device=torch.device("cpu"),
            accountant="rdp",
            proximal_mu=mu,
        )
        moved = zip(model.parameters(), sent, strict=True)
        return sum(float((p - s).pow(2).sum()) for p, s in moved)

    free, pulled = drift(0.0), drift(100.0)

    assert 0 < pulled < 0.5 * free
