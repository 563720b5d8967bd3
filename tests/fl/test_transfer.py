"""transfer-dtype: half the bytes on the wire, weights that still fit the model."""

from __future__ import annotations

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
    RecordDict,
)
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedward.config import FedwardConfig
from fedward.fl.client_app import make_client_app
from fedward.fl.protocol import (
    MetricKey,
    RecordKey,
    encode_arrays,
    load_arrays,
    state_from_arrays,
    to_arrays,
)
from fedward.models import get_model
from tests.conftest import WriteFolder
from tests.messages import instruction


def wire_bytes(msg: Message) -> int:
    """What Flower pushes for a message: each of its objects, deflated, once."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(msg).values())


def global_arrays(config: FedwardConfig) -> ArrayRecord:
    torch.manual_seed(0)
    return to_arrays(get_model(config.model, num_classes=2, image_size=32))


def train_round(config: FedwardConfig, data: Path) -> tuple[Message, Message]:
    """The instruction the server sends and the hospital's reply."""
    sent = encode_arrays(global_arrays(config), config.transfer_dtype)
    content = RecordDict(
        {
            RecordKey.ARRAYS: sent,
            RecordKey.CONFIG: ConfigRecord({MetricKey.SERVER_ROUND: 1}),
        }
    )
    msg = instruction(content, node_id=7, message_type=MessageType.TRAIN)
    context = Context(1, 7, {"data-path": str(data)}, RecordDict(), {})
    return msg, make_client_app(config)(msg, context)


def test_half_precision_halves_the_bytes_each_way(
    write_folder: WriteFolder, small_config: FedwardConfig
) -> None:
    data = write_folder(per_class=6)
    sizes = {}
    replies = {}
    for dtype in ("float32", "float16", "bfloat16"):
        config = small_config.replace(transfer_dtype=dtype, augment=False)
        down, up = train_round(config, data)
        sizes[dtype] = (wire_bytes(down), wire_bytes(up))
        replies[dtype] = state_from_arrays(up.content.array_records[RecordKey.ARRAYS])

    for dtype in ("float16", "bfloat16"):
        for way in (0, 1):
            assert 0.49 < sizes[dtype][way] / sizes["float32"][way] < 0.51
    # the same training seen through 16 bits: far closer to the float32 result
    # than the training moved the weights
    start = state_from_arrays(global_arrays(small_config))
    full = replies["float32"]
    moved = sum(float((full[k] - start[k]).abs().sum()) for k in full)
    for dtype in ("float16", "bfloat16"):
        off = sum(
            float((replies[dtype][k].float() - full[k]).abs().sum()) for k in full
        )
        assert off < 0.25 * moved, dtype


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_hospital_loads_half_precision_weights(dtype: str) -> None:
    config = FedwardConfig(image_size=32)
    model = get_model(config.model, num_classes=2, image_size=32)
    source = global_arrays(config)

    load_arrays(model, encode_arrays(source, dtype))

    for key, values in model.state_dict().items():
        assert values.dtype == torch.float32 or not values.is_floating_point()
        expected = torch.from_numpy(np.array(source[key].numpy()))
        assert torch.allclose(values, expected.to(values.dtype), rtol=1e-2, atol=1e-2)
