"""Model weights <-> Flower ``ArrayRecord``, and checks on received weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from torch import nn

from fedward.common.errors import WeightsError

RecordT = TypeVar("RecordT", ArrayRecord, ConfigRecord, MetricRecord)


def get_record(msg: Message, key: str, kind: type[RecordT]) -> RecordT:
    """The record ``key`` of a message's content, checked to be of ``kind``.

    Raises
    ------
    WeightsError
        If the message has no such record.
    """
    record = msg.content.get(key)
    if not isinstance(record, kind):
        raise WeightsError(f"message has no {kind.__name__} named '{key}'")
    return record


def metric_record(values: Mapping[str, float]) -> MetricRecord:
    """A ``MetricRecord`` of plain float figures."""
    data: dict[str, int | float | list[int] | list[float]] = dict(values)
    return MetricRecord(data)


def to_arrays(model: nn.Module) -> ArrayRecord:
    """The model's state dict as an ``ArrayRecord`` (copied to CPU)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return ArrayRecord(torch_state_dict=state)


def check_arrays(reference: ArrayRecord, candidate: ArrayRecord) -> list[str]:
    """Problems that make ``candidate`` unusable as weights shaped like ``reference``.

    Checks the key set, every shape and that every floating value is finite.
    """
    problems: list[str] = []
    missing = sorted(set(reference) - set(candidate))
    extra = sorted(set(candidate) - set(reference))
    if missing:
        problems.append(f"missing tensors: {missing[:5]}")
    if extra:
        problems.append(f"unexpected tensors: {extra[:5]}")
    for key in sorted(set(reference) & set(candidate)):
        ref, got = reference[key], candidate[key]
        if tuple(ref.shape) != tuple(got.shape):
            problems.append(f"'{key}' has shape {got.shape}, expected {ref.shape}")
            continue
        values = got.numpy()
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            problems.append(f"'{key}' holds NaN or infinite values")
    return problems


def load_arrays(model: nn.Module, arrays: ArrayRecord) -> None:
    """Load ``arrays`` into ``model`` after checking them.

    Raises
    ------
    WeightsError
        If keys, shapes or values do not fit the model.
    """
    problems = check_arrays(to_arrays(model), arrays)
    if problems:
        raise WeightsError(problems)
    model.load_state_dict(arrays.to_torch_state_dict())
