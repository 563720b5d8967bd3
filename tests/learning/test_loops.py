from pathlib import Path

import numpy as np
import torch

from fedward.config import FedwardConfig
from fedward.data.datasets import make_loader
from fedward.data.transforms import ScaleToUnit
from fedward.learning.loops import seed_everything
from fedward.learning.site import Site
from tests.conftest import WriteFolder, site_data


def weights_after_one_round(root: Path, config: FedwardConfig) -> list[torch.Tensor]:
    site = Site("s", site_data(root, config), config)
    seed_everything(0)  # same global weights in, as the server sends them
    model = site.new_model()
    site.fit(model, server_round=1)
    return [p.detach().clone() for p in model.parameters()]


def test_training_is_reproducible_on_cpu(
    write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    root = write_folder(per_class=8)

    first = weights_after_one_round(root, small_config)
    second = weights_after_one_round(root, small_config)

    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_training_learns_an_easy_task(write_folder: WriteFolder) -> None:
    config = FedwardConfig(
        model="seed-cnn",
        image_size=32,
        batch_size=8,
        local_epochs=6,
        learning_rate=1e-3,
        augment=False,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    site = Site("s", site_data(write_folder(per_class=15), config), config)
    model = site.new_model()

    before = site.evaluate(model, "train")
    result = site.fit(model, server_round=1)
    after = site.evaluate(model, "train")

    assert len(result.epochs) == 6
    assert result.epochs[-1].val_loss is not None  # validated after each epoch
    assert after.loss < before.loss
    assert after.accuracy >= 0.9


def test_evaluate_counts_every_image_once(
    write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    site = Site("s", site_data(write_folder(), small_config), small_config)
    test = site.data.test

    result = site.evaluate(site.new_model(), "test")

    assert result.num_examples == len(test)
    assert int(result.confusion.sum()) == len(test)
    assert result.confusion.sum(axis=1).tolist() == test.class_counts(2)
    assert np.isfinite(result.loss)


def test_loader_yields_items_of_the_common_shape(
    write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    data = site_data(write_folder(), small_config).train
    loader = make_loader(data, ScaleToUnit(), batch_size=3, shuffle=False, seed=0)

    batch = next(iter(loader))

    assert set(batch) == {"image", "label", "meta"}
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["image"].dtype == torch.float32
    assert 0.0 <= float(batch["image"].min()) <= float(batch["image"].max()) <= 1.0
