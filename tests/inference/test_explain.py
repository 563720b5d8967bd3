from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fedward.cli import main
from fedward.config import FedwardConfig
from fedward.inference.explain import grad_cam
from fedward.learning.loops import seed_everything
from fedward.learning.site import Site
from tests.conftest import WriteFolder, site_data


def test_grad_cam_of_a_trained_model_points_at_the_lesion(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    # label 1 images carry a bright square at rows/cols 10..30 of 40 (16..48 of 64)
    config = FedwardConfig(
        model="seed-cnn",
        image_size=64,
        batch_size=8,
        local_epochs=8,
        learning_rate=1e-3,
        augment=False,
    )
    site = Site("s", site_data(write_folder(per_class=20), config), config)
    seed_everything(0)
    model = site.new_model()
    site.fit(model, server_round=1)
    positives = site.data.train.images[site.data.train.labels == 1][:8].float() / 255

    maps, probs = grad_cam(model.cpu(), positives)

    inside = np.zeros((64, 64), dtype=bool)
    inside[16:48, 16:48] = True
    ratio = maps[:, inside].mean() / maps[:, ~inside].mean()
    assert probs[:, 1].mean() > 0.8
    assert ratio > 2.0  # heat per pixel on the lesion vs. off it
    assert maps.min() >= 0.0
    assert maps.max() == 1.0


def test_explain_cli_writes_overlays(write_folder: WriteFolder, tmp_path: Path) -> None:
    from fedward.models import get_model
    from fedward.models.checkpoint import ModelCard, save_checkpoint
    from fedward.signing import Signer

    torch.manual_seed(0)
    state = get_model("seed-cnn", num_classes=2, image_size=32).state_dict()
    card = ModelCard("seed-cnn", ["normal", "opacity"], 3, 32, 1)
    save_checkpoint(tmp_path / "model.pt", card, state)
    Signer.ephemeral().sign_folder(tmp_path, ["model.pt"], card.meta())
    images = write_folder(per_class=2)

    code = main(
        [
            "explain",
            "--model",
            str(tmp_path),
            str(images),
            "--out",
            str(tmp_path / "cam"),
        ]
    )

    overlays = sorted((tmp_path / "cam").glob("*.gradcam.png"))
    assert code == 0
    assert len(overlays) == 4
    pixels = np.asarray(Image.open(overlays[0]))
    assert pixels.shape == (256, 256, 3)
    assert (tmp_path / "cam" / "gradcam.csv").read_text().count("\n") == 5
