"""A hospital predicts with the federation's harmonisation and its own norm layers."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from fedward.data.harmonize import PERCENTILES, harmonize_images
from fedward.errors import ModelError
from fedward.inference.export import Predictor, export_model
from fedward.learning.local_norm import norm_state
from fedward.models import get_model
from fedward.models.checkpoint import ModelCard, save_checkpoint
from fedward.runfolder import RunFolder
from fedward.signing import Signer

SCALE = [float(v) for v in np.linspace(0, 255, len(PERCENTILES)) ** 1.0]
CARD = ModelCard("seed-cnn-bn", ["normal", "opacity"], 3, 32, 2, SCALE, True)


def test_prediction_harmonises_and_uses_the_hospitals_own_norm_layers(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = get_model("seed-cnn-bn", num_classes=2, image_size=32)
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    save_checkpoint(run.checkpoint, CARD, model.state_dict())
    signer = Signer.ephemeral()
    run.sign(signer, CARD.meta())
    export_model(CARD, model.state_dict(), tmp_path / "export", signer=signer)
    mine = get_model("seed-cnn-bn", num_classes=2, image_size=32)
    with torch.no_grad():  # the hospital's own statistics differ
        for module in mine.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.fill_(0.3)  # type: ignore[union-attr]
                module.running_var.fill_(2.0)  # type: ignore[union-attr]
    state_file = tmp_path / RunFolder.SITE_NORM
    save_file(norm_state(mine), str(state_file))
    pixels = (np.random.default_rng(0).random((32, 32)) ** 2 * 200).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")

    predictor = Predictor(run.checkpoint, site_state=state_file)
    image = predictor.load_image(tmp_path / "x.png")

    raw = torch.from_numpy(np.repeat(pixels[None], 3, axis=0))
    assert torch.equal(image[0], harmonize_images(raw, SCALE).float() / 255)
    expected = {**model.state_dict(), **norm_state(mine)}
    reference = get_model("seed-cnn-bn", num_classes=2, image_size=32)
    reference.load_state_dict(expected)
    want = torch.softmax(reference.eval()(image), 1).detach().numpy()
    assert np.allclose(predictor.probabilities(image), want, atol=1e-6)
    plain = Predictor(run.checkpoint).probabilities(image)
    assert not np.allclose(plain, want, atol=1e-4)
    with pytest.raises(ModelError, match=r"model\.pt or model\.safetensors"):
        Predictor(tmp_path / "export" / "model.onnx", site_state=state_file)
