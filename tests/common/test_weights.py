import pytest
import torch
from flwr.app import ArrayRecord

from fedward.common.errors import WeightsError
from fedward.common.models import get_model
from fedward.common.weights import check_arrays, load_arrays, to_arrays


def small_model() -> torch.nn.Module:
    return get_model("seed-cnn", num_classes=2, image_size=32)


def test_round_trip_through_an_array_record() -> None:
    source, target = small_model(), small_model()

    load_arrays(target, to_arrays(source))

    for a, b in zip(
        source.state_dict().values(), target.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_non_finite_wrong_shape_and_missing_tensors_are_named() -> None:
    model = small_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    keys = list(state)
    state[keys[0]][0] = float("nan")
    state[keys[1]] = torch.zeros(3)
    del state[keys[2]]

    problems = check_arrays(to_arrays(model), ArrayRecord(torch_state_dict=state))

    text = "\n".join(problems)
    assert f"'{keys[0]}' holds NaN" in text
    assert f"'{keys[1]}' has shape" in text
    assert keys[2] in text


def test_load_refuses_bad_weights_and_leaves_the_model_unchanged() -> None:
    model = small_model()
    before = [p.clone() for p in model.parameters()]
    state = {k: torch.full_like(v, float("inf")) for k, v in model.state_dict().items()}

    with pytest.raises(WeightsError):
        load_arrays(model, ArrayRecord(torch_state_dict=state))

    assert all(
        torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)
    )
