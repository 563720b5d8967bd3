import math
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

from fedward.config import FedwardConfig
from fedward.errors import WeightsError
from fedward.fl.client_app import make_client_app
from fedward.fl.protocol import MetricKey, RecordKey, to_arrays
from fedward.models import get_model
from tests.conftest import WriteFolder
from tests.messages import instruction


def context(data_path: Path) -> Context:
    node_config: dict[str, bool | float | int | str] = {
        "data-path": str(data_path),
        "site-name": "st-elsewhere",
    }
    return Context(1, 7, node_config, RecordDict(), {})


def global_arrays(config: FedwardConfig) -> ArrayRecord:
    torch.manual_seed(0)
    return to_arrays(
        get_model(config.model, num_classes=2, image_size=config.image_size)
    )


def request(
    config: FedwardConfig, kind: str, arrays: ArrayRecord | None = None
) -> Message:
    content = RecordDict(
        {
            RecordKey.ARRAYS: arrays or global_arrays(config),
            RecordKey.CONFIG: ConfigRecord({MetricKey.SERVER_ROUND: 1}),
        }
    )
    return instruction(content, node_id=7, message_type=kind)


def test_train_returns_new_weights_count_and_metrics(
    write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    app = make_client_app(small_config)
    root = write_folder(per_class=6)
    sent = global_arrays(small_config)

    reply = app(request(small_config, MessageType.TRAIN, sent), context(root))

    arrays = reply.content[RecordKey.ARRAYS]
    metrics = reply.content[RecordKey.METRICS]
    assert isinstance(arrays, ArrayRecord)
    assert isinstance(metrics, MetricRecord)
    assert set(arrays) == set(sent)
    changed = [not np.array_equal(arrays[k].numpy(), sent[k].numpy()) for k in sent]
    assert any(changed)
    assert metrics[MetricKey.NUM_EXAMPLES] == 8  # 12 images, 2 val, 2 test
    train_loss = metrics[MetricKey.TRAIN_LOSS]
    assert isinstance(train_loss, float)
    assert math.isfinite(train_loss)
    assert reply.content[RecordKey.SITE][MetricKey.SITE_NAME] == "st-elsewhere"


def test_evaluate_returns_confusion_counts_not_images(
    write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    app = make_client_app(small_config)
    root = write_folder("eval-site", per_class=6)

    reply = app(request(small_config, MessageType.EVALUATE), context(root))

    metrics = reply.content[RecordKey.METRICS]
    assert set(metrics) == {
        MetricKey.NUM_EXAMPLES,
        MetricKey.LOSS_SUM,
        MetricKey.CONFUSION,
        MetricKey.SCORE_HIST,
        MetricKey.CALIBRATION,
    }
    assert sum(metrics[MetricKey.CONFUSION]) == metrics[MetricKey.NUM_EXAMPLES] == 2  # type: ignore[arg-type]
    assert RecordKey.ARRAYS not in reply.content


def test_non_finite_global_weights_are_refused(
    write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    app = make_client_app(small_config)
    root = write_folder("nan-site")
    bad = {
        k: torch.full_like(v, float("nan"))
        for k, v in global_arrays(small_config).to_torch_state_dict().items()
    }

    with pytest.raises(WeightsError, match="NaN"):
        app(
            request(small_config, MessageType.TRAIN, ArrayRecord(torch_state_dict=bad)),
            context(root),
        )
