"""FedBN: normalisation layers never leave the hospital and persist across restarts."""

from pathlib import Path

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from flwr.common.serde import message_from_proto
from flwr.proto.message_pb2 import Message as ProtoMessage

from fedward.config import FedwardConfig
from fedward.fl.client_app import _cached_site, make_client_app
from fedward.fl.protocol import (
    PERSONALIZE_MESSAGE,
    MetricKey,
    RecordKey,
    personalized_counts,
    to_arrays,
)
from fedward.learning.local_norm import norm_keys
from fedward.models import get_model
from fedward.runfolder import RunFolder
from tests.conftest import WriteFolder
from tests.messages import instruction


def bn_config(tmp_path: Path, small_config: FedwardConfig) -> FedwardConfig:
    return small_config.replace(
        model="seed-cnn-bn",
        local_norm=True,
        run_dir=str(tmp_path / "run"),
        personalize_epochs=1,
    )


def global_arrays(config: FedwardConfig) -> tuple[ArrayRecord, frozenset[str]]:
    torch.manual_seed(0)
    model = get_model(config.model, num_classes=2, image_size=config.image_size)
    keys = norm_keys(model)
    return to_arrays(model, exclude=keys), keys


def request(arrays: ArrayRecord, kind: str, server_round: int = 1) -> Message:
    content = RecordDict(
        {
            RecordKey.ARRAYS: arrays,
            RecordKey.CONFIG: ConfigRecord({MetricKey.SERVER_ROUND: server_round}),
        }
    )
    return instruction(content, node_id=7, message_type=kind)


def context(data: Path, audit: Path) -> Context:
    node: dict[str, bool | float | int | str] = {
        "data-path": str(data),
        "site-name": "st-norm",
        "audit-dir": str(audit),
    }
    return Context(1, 7, node, RecordDict(), {})


def sent_messages(audit: Path) -> list[Message]:
    messages = []
    for path in sorted(audit.glob("*.bin")):
        proto = ProtoMessage()
        proto.ParseFromString(path.read_bytes())
        messages.append(message_from_proto(proto))
    return messages


def test_normalisation_keys_never_leave_the_hospital(
    tmp_path: Path, write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    config = bn_config(tmp_path, small_config)
    data, audit = write_folder("norm-site", per_class=6), tmp_path / "audit"
    arrays, keys = global_arrays(config)
    app = make_client_app(config)

    app(request(arrays, MessageType.TRAIN), context(data, audit))
    app(request(arrays, MessageType.EVALUATE), context(data, audit))
    app(request(arrays, MessageType.QUERY), context(data, audit))
    app(request(arrays, PERSONALIZE_MESSAGE), context(data, audit))

    messages = sent_messages(audit)
    assert len(messages) == 4
    for message in messages:
        for record in message.content.values():
            names = set(record) if isinstance(record, ArrayRecord) else set()
            assert not names & keys
        raw = str(message.content)
        assert not any(key in raw for key in keys)
    trained = messages[0].content[RecordKey.ARRAYS]
    assert isinstance(trained, ArrayRecord)
    assert set(trained) == set(arrays)  # everything else does travel


def test_the_hospital_keeps_its_normalisation_state_across_rounds_and_restarts(
    tmp_path: Path, write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    config = bn_config(tmp_path, small_config)
    data, audit = write_folder("norm-site-2", per_class=6), tmp_path / "audit"
    arrays, keys = global_arrays(config)
    app = make_client_app(config)
    app(request(arrays, MessageType.TRAIN), context(data, audit))
    # a hospital named by its data folder keeps its state beside its cache
    saved = data / ".fedward" / "run-1.local" / RunFolder.SITE_NORM
    first = app(request(arrays, MessageType.EVALUATE), context(data, audit))

    _cached_site.cache_clear()  # a restarted SuperNode decodes its data again
    again = make_client_app(config)(
        request(arrays, MessageType.EVALUATE), context(data, audit)
    )

    from safetensors.torch import load_file

    state = load_file(str(saved))
    assert set(state) == keys
    assert not torch.equal(state["features.1.running_mean"], torch.zeros(32))
    metrics = [m.content[RecordKey.METRICS] for m in (first, again)]
    assert metrics[0][MetricKey.LOSS_SUM] == metrics[1][MetricKey.LOSS_SUM]
    # evaluation used the site's statistics, not the initial ones
    saved.unlink()
    initial = make_client_app(config)
    other = initial(request(arrays, MessageType.EVALUATE), context(data, audit))
    assert (
        other.content[RecordKey.METRICS][MetricKey.LOSS_SUM]
        != metrics[0][MetricKey.LOSS_SUM]
    )


def test_personalised_figures_come_from_the_same_test_images(
    tmp_path: Path, write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    config = bn_config(tmp_path, small_config).replace(personalize_epochs=3)
    data, audit = write_folder("pers-site", per_class=10), tmp_path / "audit"
    arrays, _ = global_arrays(config)
    app = make_client_app(config)

    reply = app(request(arrays, PERSONALIZE_MESSAGE), context(data, audit))

    global_, personal = personalized_counts(reply, 2)
    evaluated = app(request(arrays, MessageType.EVALUATE), context(data, audit))
    test_labels = np.array(evaluated.content[RecordKey.METRICS][MetricKey.CONFUSION])
    assert global_.num_examples == personal.num_examples == 4  # the test split
    assert (global_.confusion.sum(1) == personal.confusion.sum(1)).all()
    assert (global_.confusion.ravel() == test_labels).all()  # same model, same images
    kept = data / ".fedward" / "run-1.local" / RunFolder.SITE_PERSONALIZED
    assert kept.is_file()  # the fine-tuned weights stay at the hospital
