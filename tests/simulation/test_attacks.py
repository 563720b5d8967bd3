"""Each attack kind is applied as documented, and the default defences stop it."""

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MessageType, MetricRecord, RecordDict

from fedward.config import AttackConfig, FedwardConfig
from fedward.data.datasets import DecodedImages, SiteSplits
from fedward.errors import ConfigError
from fedward.fl.protocol import MetricKey, RecordKey
from fedward.fl.recorder import RunRecorder
from fedward.fl.strategies import make_strategy
from fedward.learning.site import Site
from fedward.models import get_model
from fedward.simulation.attacks import Attacks, check_sites, parse_attack, read_attacks
from tests.messages import reply

KINDS = ("sign-flip", "scale", "gaussian-noise", "nan", "label-flip")


def images(n: int, seed: int) -> DecodedImages:
    """Separable 32 px images: class 1 has a bright square."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, size=(n, 1, 32, 32), dtype=np.uint8)
    labels = np.arange(n) % 2
    pixels[labels == 1, :, 8:24, 8:24] = 220
    return DecodedImages(torch.from_numpy(pixels), torch.from_numpy(labels), [""] * n)


@pytest.fixture(scope="module")
def config() -> FedwardConfig:
    return FedwardConfig(
        image_size=32,
        in_channels=1,
        batch_size=8,
        local_epochs=2,
        learning_rate=1e-3,
        augment=False,
        channels_last=False,
    )


def site(config: FedwardConfig, i: int) -> Site:
    empty = images(2, 99)
    return Site(f"hospital-{i}", SiteSplits(images(24, i), empty, empty), config)


def train_reply(node: int, state: dict[str, torch.Tensor], name: str) -> object:
    model_like = ArrayRecord(torch_state_dict=state)
    content = RecordDict(
        {
            RecordKey.ARRAYS: model_like,
            RecordKey.METRICS: MetricRecord({MetricKey.NUM_EXAMPLES: 24}),
            RecordKey.SITE: ConfigRecord({MetricKey.SITE_NAME: name}),
        }
    )
    return reply(content, node, MessageType.TRAIN)


def new_model() -> torch.nn.Module:
    return get_model("seed-cnn", num_classes=2, in_channels=1, image_size=32)


@pytest.fixture(scope="module")
def honest_round(
    config: FedwardConfig,
) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The global weights sent, and each of three hospitals' honest training."""
    torch.manual_seed(0)
    sent = {k: v.clone() for k, v in new_model().state_dict().items()}
    trained = []
    for i in range(1, 4):
        model = new_model()
        model.load_state_dict(sent)
        site(config, i).fit(model, 1)
        trained.append({k: v.clone() for k, v in model.state_dict().items()})
    return sent, trained


def one_round(
    config: FedwardConfig,
    honest_round: tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]],
    attack: AttackConfig,
    tmp_path: Path,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """One round with real local training, hospital-1 running ``attack``.

    ``config``'s strategy aggregates; returns the hospitals it rejected and the
    new global weights.
    """
    sent, trained = honest_round
    hook = Attacks([attack], seed=0)
    attacker = site(config, 1)
    state = trained[0]
    if attack.kind == "label-flip":
        model = new_model()
        model.load_state_dict(sent)
        hook.before_fit(attacker, 1).fit(model, 1)
        state = model.state_dict()
    states = [hook.after_fit(attacker, 1, sent, state), *trained[1:]]
    replies = [train_reply(i, s, f"hospital-{i}") for i, s in enumerate(states, 1)]
    strategy = make_strategy(config, RunRecorder(tmp_path, config))
    strategy._sent = ArrayRecord(torch_state_dict=sent)
    new, _ = strategy.aggregate_train(1, replies)  # type: ignore[arg-type]
    assert new is not None
    rows = strategy.recorder.rows
    return [r["site"] for r in rows if r["scope"] == "rejected"], {
        k: a.numpy() for k, a in new.items()
    }


@pytest.mark.parametrize(
    ("kind", "factor"),
    [
        ("sign-flip", 20.0),  # the example
        ("scale", 20.0),
        ("gaussian-noise", 20.0),
        ("nan", 1.0),
    ],
)
def test_the_default_defences_reject_amplified_and_broken_updates(
    config: FedwardConfig,
    honest_round: tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]],
    tmp_path: Path,
    kind: str,
    factor: float,
) -> None:
    attack = AttackConfig(site="hospital-1", kind=kind, factor=factor)  # type: ignore[arg-type]

    rejected, _ = one_round(config, honest_round, attack, tmp_path)

    assert rejected == ["hospital-1"]


@pytest.mark.parametrize(("kind", "factor"), [("sign-flip", 1.0), ("label-flip", 1.0)])
def test_a_reversed_update_of_normal_length_is_caught_when_asked_or_outvoted(
    config: FedwardConfig,
    honest_round: tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]],
    tmp_path: Path,
    kind: str,
    factor: float,
) -> None:
    """Label skew makes honest updates point away too, so the direction check
    is off by default; asked for, it rejects these, and FedMedian outvotes them."""
    attack = AttackConfig(site="hospital-1", kind=kind, factor=factor)  # type: ignore[arg-type]
    checked = config.replace(update_min_cosine=0.0)
    median = config.replace(strategy="fedmedian")

    by_default, _ = one_round(config, honest_round, attack, tmp_path / "a")
    by_direction, _ = one_round(checked, honest_round, attack, tmp_path / "b")
    by_median, weights = one_round(median, honest_round, attack, tmp_path / "c")

    assert by_default == []  # the same length as an honest update
    assert by_direction == ["hospital-1"]
    assert by_median == []
    _, honest = honest_round
    for key, value in weights.items():  # each weight between the honest two
        low = np.minimum(honest[1][key].numpy(), honest[2][key].numpy())
        high = np.maximum(honest[1][key].numpy(), honest[2][key].numpy())
        assert ((value >= low - 1e-6) & (value <= high + 1e-6)).all(), key


def test_honest_hospitals_pass_the_defences(
    config: FedwardConfig,
    honest_round: tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]],
    tmp_path: Path,
) -> None:
    harmless = AttackConfig(site="hospital-9", kind="scale", factor=20.0)
    checked = config.replace(update_min_cosine=0.0)

    assert one_round(config, honest_round, harmless, tmp_path / "a")[0] == []
    assert one_round(checked, honest_round, harmless, tmp_path / "b")[0] == []


def test_weight_attacks_are_applied_as_documented(config: FedwardConfig) -> None:
    sent = {"w": torch.zeros(4), "steps": torch.tensor(3)}
    trained = {"w": torch.tensor([1.0, -2.0, 0.5, 0.0]), "steps": torch.tensor(4)}
    here = site(config, 1)

    def sent_by(kind: str, factor: float) -> dict[str, torch.Tensor]:
        hook = Attacks([AttackConfig(site="hospital-1", kind=kind, factor=factor)])  # type: ignore[arg-type]
        return hook.after_fit(here, 1, sent, trained)

    assert torch.equal(sent_by("sign-flip", 2.0)["w"], -2.0 * trained["w"])
    assert torch.equal(sent_by("scale", 20.0)["w"], 20.0 * trained["w"])
    noisy = sent_by("gaussian-noise", 3.0)["w"] - trained["w"]
    assert 0 < float(noisy.abs().max()) < 3.0 * 1.12 * 6  # rms 1.12, within 6 sd
    assert torch.isnan(sent_by("nan", 1.0)["w"]).all()
    assert int(sent_by("nan", 1.0)["steps"]) == 4  # integer buffers untouched
    other = Site("hospital-2", here.data, config)
    assert torch.equal(
        Attacks([AttackConfig(site="hospital-1", kind="scale", factor=9)]).after_fit(
            other, 1, sent, trained
        )["w"],
        trained["w"],
    )


def test_label_flip_changes_the_share_of_labels_asked_for(
    config: FedwardConfig,
) -> None:
    here = site(config, 1)
    half = Attacks([AttackConfig(site="hospital-1", kind="label-flip", factor=0.5)])

    flipped = half.before_fit(here, 1).data.train.labels

    assert int((flipped != here.data.train.labels).sum()) == 12
    assert torch.equal(here.data.train.labels, images(24, 1).labels)  # a copy


def test_attack_tables_are_read_and_checked(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'num-hospitals = 3\n[[attack]]\nsite = "hospital-2"\nkind = "scale"\n'
        'factor = 20.0\n[[attack]]\nsite = "hospital-3"\nkind = "sign-flap"\n'
    )

    with pytest.raises(ConfigError) as info:
        read_attacks(scenario)

    assert "'kind' must be one of sign-flip, scale" in str(info.value)
    assert parse_attack("hospital-2:scale:20") == AttackConfig(
        site="hospital-2", kind="scale", factor=20.0
    )
    with pytest.raises(ConfigError, match="no simulated hospital named 'h9'"):
        check_sites([parse_attack("h9:nan")], ["hospital-1", "hospital-2"])
    assert set(KINDS) == {"sign-flip", "scale", "gaussian-noise", "nan", "label-flip"}
