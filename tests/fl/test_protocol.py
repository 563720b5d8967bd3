import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from fedward.errors import DataError, WeightsError
from fedward.fl.protocol import (
    check_arrays,
    counts_from_metrics,
    counts_to_metrics,
    load_arrays,
    to_arrays,
)
from fedward.metrics.counts import EvalCounts
from fedward.models import get_model


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


def batch(
    rng: np.random.Generator, n: int, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)
    p1 = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + shift * (2 * labels - 1))))
    return np.stack([1 - p1, p1], axis=1), labels


def test_reported_counts_are_checked() -> None:
    rng = np.random.default_rng(2)
    good = dict(counts_to_metrics(EvalCounts.of_batch(*batch(rng, 20, 1.0), 5.0)))

    assert counts_from_metrics(good, 2).num_examples == 20
    for key, bad in [
        ("confusion-matrix", [1, 2, 3]),
        ("num-examples", 21),
        ("score-histogram", [0] * 400),
        ("loss-sum", float("nan")),
        ("calibration", [0.0] * 3),
    ]:
        with pytest.raises(DataError):
            counts_from_metrics({**good, key: bad}, 2)
