import numpy as np
import pytest

from fedward.errors import WeightsError
from fedward.learning.aggregation import RunningMean


def updates(n: int, seed: int = 0) -> list[tuple[dict[str, np.ndarray], int]]:
    rng = np.random.default_rng(seed)
    return [
        (
            {
                "conv": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
                "bias": rng.normal(size=(4,)).astype(np.float32),
                "steps": np.array(10 * (i + 1), dtype=np.int64),
            },
            int(rng.integers(5, 50)),
        )
        for i in range(n)
    ]


def test_the_mean_is_the_example_weighted_mean() -> None:
    contributions = updates(7)
    mean = RunningMean()
    for arrays, weight in contributions:
        mean.add(arrays, weight)

    result = mean.result()

    total = sum(w for _, w in contributions)
    for key in ("conv", "bias"):
        exact = sum(a[key].astype(np.float64) * w for a, w in contributions) / total
        assert result[key].dtype == np.float32
        assert result[key].shape == contributions[0][0][key].shape
        np.testing.assert_allclose(result[key], exact, rtol=0, atol=1e-6)
    steps = sum(int(a["steps"]) * w for a, w in contributions) / total
    assert result["steps"].dtype == np.int64
    assert int(result["steps"]) == round(steps)


def test_chunks_do_not_change_the_result() -> None:
    contributions = updates(5, seed=1)
    small, large = RunningMean(chunk=7), RunningMean()
    for arrays, weight in contributions:
        small.add(arrays, weight)
        large.add(arrays, weight)

    a, b = small.result(), large.result()

    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_half_precision_updates_average_into_float32() -> None:
    mean = RunningMean()
    mean.add({"w": np.array([1.0, 2.0], dtype=np.float16)}, 1)
    mean.add({"w": np.array([3.0, 4.0], dtype=np.float16)}, 3)

    result = mean.result()["w"]

    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, [2.5, 3.5])


@pytest.mark.parametrize("weight", [0, -1, float("nan"), float("inf")])
def test_a_weight_must_be_positive_and_finite(weight: float) -> None:
    with pytest.raises(WeightsError, match="weight"):
        RunningMean().add({"w": np.ones(2, np.float32)}, weight)


def test_updates_must_match_the_first_one() -> None:
    mean = RunningMean()
    mean.add({"w": np.ones(2, np.float32)}, 1)

    with pytest.raises(WeightsError, match="shape"):
        mean.add({"w": np.ones(3, np.float32)}, 1)
    with pytest.raises(WeightsError, match="other tensors"):
        mean.add({"v": np.ones(2, np.float32)}, 1)
    assert mean.count == 1


def test_no_update_no_mean() -> None:
    with pytest.raises(WeightsError, match="no update"):
        RunningMean().result()
