"""The CUDA path (automatic mixed precision); skipped on machines without a GPU."""

import pytest
import torch

from fedward.config import FedwardConfig
from fedward.learning.loops import seed_everything, select_device
from fedward.learning.site import Site
from tests.conftest import WriteFolder, site_data

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_auto_picks_cuda_and_training_with_amp_learns(
    write_folder: WriteFolder,
) -> None:
    config = FedwardConfig(
        model="seed-cnn",
        image_size=32,
        batch_size=8,
        local_epochs=6,
        learning_rate=1e-3,
        augment=False,
    )
    site = Site("s", site_data(write_folder(per_class=15), config), config)
    seed_everything(0)
    model = site.new_model()

    result = site.fit(model, server_round=1)
    counts = site.evaluate(model, "train")

    assert select_device("auto").type == "cuda"
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert counts.accuracy >= 0.9
    assert next(model.parameters()).device.type == "cpu"  # handed back on the CPU
