"""Strategies by name: composition, the round's screening, state for resuming."""

import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp.strategy import FedAdam, FedAvgM, FedMedian, Krum
from flwr.serverapp.strategy.fedopt import FedOpt

from fedward.config import FedwardConfig, StrategyName
from fedward.fl.protocol import MetricKey, RecordKey
from fedward.fl.recorder import RunRecorder
from fedward.fl.strategies import FedwardStrategy, Screen, compose, make_strategy
from fedward.fl.strategies.registry import STRATEGIES
from tests.messages import reply

NO_SCREEN = {"update-norm-bound": 0.0, "update-min-cosine": -1.0}


def arrays(w: np.ndarray, b: float = 0.0) -> ArrayRecord:
    return ArrayRecord(
        torch_state_dict={
            "w": torch.tensor(w, dtype=torch.float32),
            "b": torch.full((3,), b),
            "steps": torch.tensor(7),  # an integer buffer: never screened
        }
    )


def train_reply(node: int, weights: ArrayRecord, n: int = 10) -> Message:
    content = RecordDict(
        {
            RecordKey.ARRAYS: weights,
            RecordKey.METRICS: MetricRecord(
                {MetricKey.NUM_EXAMPLES: n, MetricKey.TRAIN_LOSS: 0.5}
            ),
            RecordKey.SITE: ConfigRecord({MetricKey.SITE_NAME: f"h{node}"}),
        }
    )
    return reply(content, node, MessageType.TRAIN)


def strategy(tmp_path: Path, name: str = "fedavg", **keys: object) -> FedwardStrategy:
    config = FedwardConfig.from_mapping({"strategy": name, **keys})
    return make_strategy(config, RunRecorder(tmp_path, config))


def rejected(s: FedwardStrategy) -> dict[str, list[str]]:
    return {
        r["site"]: r["problems"] for r in s.recorder.rows if r["scope"] == "rejected"
    }


def test_every_configured_name_is_a_flower_strategy_composed_once() -> None:
    names = set(typing.get_args(StrategyName))

    assert names == set(STRATEGIES)
    for name in names:
        base = STRATEGIES[name][0]
        cls = compose(base)
        assert issubclass(cls, FedwardStrategy)
        assert issubclass(cls, base)
        assert compose(base) is cls  # made once
        # fedward's hooks come first, the strategy's own next
        mro = cls.__mro__
        assert mro.index(FedwardStrategy) < mro.index(base)


def test_strategy_keys_reach_flower(tmp_path: Path) -> None:
    adam = strategy(tmp_path, "fedadam", **{"fedopt-eta": 0.05, "fedopt-tau": 0.01})
    krum = strategy(tmp_path, "multikrum", **{"num-nodes-to-select": 2})
    prox = strategy(tmp_path, "fedprox", **{"proximal-mu": 0.3})

    assert isinstance(adam, FedAdam)
    assert (adam.eta, adam.tau, adam.beta_1) == (0.05, 0.01, 0.9)
    assert krum.num_nodes_to_select == 2  # type: ignore[attr-defined]
    assert prox.proximal_mu == 0.3  # type: ignore[attr-defined]


def test_the_norm_bound_rejects_a_scaled_update_and_records_it(tmp_path: Path) -> None:
    s = strategy(tmp_path, "fedavg", **{"update-norm-bound": 3.0})
    s.screen = Screen(norm_bound=3.0, min_cosine=-1.0)
    s._sent = arrays(np.zeros((2, 3)))
    honest = [np.full((2, 3), v) for v in (1.0, 1.2, 0.9)]
    replies = [train_reply(i, arrays(w)) for i, w in enumerate(honest)]
    replies.append(train_reply(9, arrays(honest[0] * 20)))

    new, _ = s.aggregate_train(1, replies)

    assert new is not None
    assert np.allclose(new["w"].numpy(), np.mean([1.0, 1.2, 0.9]))
    assert list(rejected(s)) == ["h9"]
    assert "x the round's median" in rejected(s)["h9"][0]
    trained = {r["site"]: r for r in s.recorder.rows if r["scope"] == "train"}
    # norms are proportional to 1, 1.2, 0.9, 20: the median is that of 1.1
    assert trained["h1"]["update-norm-ratio"] == pytest.approx(1.2 / 1.1)


def test_the_direction_check_rejects_a_reversed_update(tmp_path: Path) -> None:
    s = strategy(tmp_path, "fedavg", **{"update-min-cosine": 0.0})  # direction on
    s._sent = arrays(np.zeros((2, 3)))
    rng = np.random.default_rng(0)
    common = rng.normal(size=(2, 3))
    honest = [common + 0.3 * rng.normal(size=(2, 3)) for _ in range(3)]
    replies = [train_reply(i, arrays(w)) for i, w in enumerate(honest)]
    replies.append(train_reply(9, arrays(-honest[0])))  # reversed, same norm

    new, _ = s.aggregate_train(1, replies)

    assert new is not None
    assert list(rejected(s)) == ["h9"]
    assert "points away" in rejected(s)["h9"][0]
    assert np.allclose(new["w"].numpy(), np.mean(honest, axis=0), atol=1e-6)


def test_fewer_than_three_updates_are_not_screened() -> None:
    sent = {"w": np.zeros(3)}
    verdicts = Screen().verdicts(sent, [{"w": np.ones(3)}, {"w": -100 * np.ones(3)}])

    assert [v.problems for v in verdicts] == [[], []]


@pytest.mark.parametrize("base", [FedMedian, Krum])
def test_robust_strategies_aggregate_what_passed_the_checks(
    tmp_path: Path, base: type
) -> None:
    name = base.__name__.lower()
    s = strategy(
        tmp_path, name, **{"update-norm-bound": 0.0, "update-min-cosine": -1.0}
    )
    s._sent = arrays(np.zeros((2, 3)))
    replies = [
        train_reply(i, arrays(np.full((2, 3), v)))
        for i, v in enumerate((1.0, 2.0, 3.0, 50.0))
    ]
    replies.append(train_reply(8, arrays(np.full((2, 3), np.nan))))

    new, _ = s.aggregate_train(1, replies)

    assert new is not None
    assert list(rejected(s)) == ["h8"]  # non-finite: never reaches the strategy
    got = float(new["w"].numpy()[0, 0])
    # the median of 1, 2, 3, 50; Krum picks one of the three close together
    assert got == 2.5 if base is FedMedian else got in (1.0, 2.0, 3.0)


def test_server_optimisers_keep_the_global_dtype(tmp_path: Path) -> None:
    s = strategy(tmp_path, "fedadam")
    sent = arrays(np.zeros((2, 3)))
    s.current_arrays = {k: a.numpy() for k, a in sent.items()}  # type: ignore[attr-defined]
    s._sent = sent

    new, _ = s.aggregate_train(
        1, [train_reply(i, arrays(np.ones((2, 3)))) for i in range(3)]
    )

    assert new is not None
    assert {k: new[k].dtype for k in new} == {k: sent[k].dtype for k in sent}


def _two_rounds(s: FedwardStrategy, start: ArrayRecord, rounds: range) -> ArrayRecord:
    current = start
    for r in rounds:
        s._sent = current
        if isinstance(s, FedOpt):  # configure_train sets them every round
            s.current_arrays = {k: a.numpy() for k, a in current.items()}
        elif isinstance(s, FedAvgM) and s.current_arrays is None:
            s.current_arrays = current
        targets = [np.full((2, 3), r + v) for v in (0.5, 1.0, 1.5)]
        new, _ = s.aggregate_train(
            r, [train_reply(i, arrays(t, b=r)) for i, t in enumerate(targets)]
        )
        assert new is not None
        current = new
    return current


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("fedadam", {"fedopt-eta": 0.1}),
        ("fedyogi", {}),
        ("fedadagrad", {}),
        ("fedavgm", {"server-momentum": 0.9, "server-learning-rate": 0.7}),
    ],
)
def test_state_round_trips_moments_and_momentum(
    tmp_path: Path, name: str, keys: dict[str, float]
) -> None:
    keys = {**keys, **NO_SCREEN}
    first = strategy(tmp_path / "a", name, **keys)
    after_two = _two_rounds(first, arrays(np.zeros((2, 3))), range(1, 3))
    saved = first.state()
    resumed = strategy(tmp_path / "b", name, **keys)
    resumed.load_state({k: v.copy() for k, v in saved.items()})

    expected = _two_rounds(first, after_two, range(3, 5))
    got = _two_rounds(resumed, after_two, range(3, 5))

    assert saved  # the strategy carries something between rounds
    assert all(isinstance(v, np.ndarray) for v in saved.values())
    for key in expected:
        assert np.array_equal(expected[key].numpy(), got[key].numpy())
    fresh = _two_rounds(strategy(tmp_path / "c", name, **keys), after_two, range(3, 5))
    assert not np.array_equal(fresh["w"].numpy(), got["w"].numpy())  # state mattered


def test_an_honest_hospital_that_merely_disagrees_is_kept() -> None:
    sent = {"w": np.zeros(3)}
    # two hospitals roughly agree, one slightly against them (cosine -0.18)
    replies = [
        {"w": np.array([1.0, 0.2, 0.0])},
        {"w": np.array([0.6, 0.9, 0.3])},
        {"w": np.array([-0.8, 0.1, 1.0])},
    ]

    verdicts = Screen(min_cosine=0.0).verdicts(sent, replies)

    assert verdicts[2].cosine < 0
    assert [v.problems for v in verdicts] == [[], [], []]


def test_the_direction_check_runs_on_what_the_norm_bound_kept() -> None:
    sent = {"w": np.zeros(2)}
    honest = [{"w": np.array([1.0, 0.0])}, {"w": np.array([0.2, 1.0])}]
    scaled = {"w": np.array([-40.0, -40.0])}

    verdicts = Screen(min_cosine=0.0).verdicts(sent, [*honest, scaled])

    assert [bool(v.problems) for v in verdicts] == [False, False, True]
    assert "norm" in verdicts[2].problems[0]
    assert all(np.isnan(v.cosine) for v in verdicts)  # two left: no direction check
