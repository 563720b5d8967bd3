import pytest
import torch

from fedward.errors import ModelError
from fedward.models import get_model, list_models


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_seed_cnn_has_the_seed_parameter_count() -> None:
    model = get_model("seed-cnn", num_classes=2, in_channels=3, image_size=150)

    assert n_params(model) == 19_034_690


def test_seed_cnn_layers_follow_the_seed() -> None:
    model = get_model("seed-cnn", num_classes=2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]

    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (0, 0) for c in convs)
    assert [(d.in_features, d.out_features) for d in dense] == [
        (128 * 17 * 17, 512),
        (512, 2),
    ]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_maps_images_to_class_logits(name: str, channels: int) -> None:
    model = get_model(name, num_classes=3, in_channels=channels, image_size=64).eval()

    with torch.no_grad():
        out = model(torch.rand(2, channels, 64, 64))

    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_registry_lists_the_required_models() -> None:
    assert {"seed-cnn", "resnet18", "densenet121"} <= set(list_models())


def test_unknown_model_and_bad_shapes_are_model_errors() -> None:
    with pytest.raises(ModelError, match="unknown model 'vgg'"):
        get_model("vgg", num_classes=2)
    with pytest.raises(ModelError, match="at least 2"):
        get_model("seed-cnn", num_classes=1)
    with pytest.raises(ModelError, match="image_size >= 22"):
        get_model("seed-cnn", num_classes=2, image_size=16)
