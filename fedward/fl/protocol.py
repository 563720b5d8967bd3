"""Everything a hospital sends, in one place: record keys, weights and counts.

A reviewer reads this module to know what leaves a site. A hospital's replies
hold only:

- ``query`` (the pre-training data check): the site's name and its aggregate
  statistics (:mod:`fedward.data.stats`: counts per split and class, header
  value counts, an intensity histogram), as one JSON string;
- ``train``: the site's name, the trained weights (``ArrayRecord``, in the
  run's ``transfer-dtype``: float32, or float16/bfloat16 for half the bytes), the
  number of training images and its last epoch's loss and accuracy; in a private
  run also what the round spent (:func:`privacy_record`: this run's ε at the site
  so far, δ, the privacy unit and the DP-SGD settings; never its lifetime ε
  or its ledger) -- or, when the hospital refuses to train (its privacy
  policy or budget), an error reply saying why;
- ``evaluate``: the site's name and summable counts over its held-out images
  (:class:`~fedward.metrics.counts.EvalCounts`): summed loss, confusion matrix,
  score histograms and calibration-bin totals; with ``export-round = "best"``
  the same counts over its validation images too, to choose the best round on;
- ``query.final_model`` (after the last round the server sends the signed final
  model): the site's name, whether it accepted the model, the SHA-256 of the
  manifest it checked, and the reason for a refusal (a signature problem);
- ``train.personalize`` (after the federation, with ``personalize-epochs``): the
  site's name and two sets of evaluation counts over the same held-out images,
  of the global model and of the model fine-tuned at the site (the fine-tuned
  weights stay at the site).

With ``local-norm`` the weights a hospital sends and receives leave out every
normalisation layer's parameters and statistics (:func:`to_arrays` with
``exclude``); those stay at the site.

No file name, path, patient identifier or pixel is ever put into a record.

With ``secure-aggregation = true`` the train and evaluate replies above are
replaced by masked vectors and a few key-agreement steps; what a hospital sends
then is listed in :mod:`fedward.fl.secagg.records`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
)
from flwr.common.constant import SType
from torch import nn

from fedward.errors import DataError, WeightsError
from fedward.learning.ledger import LedgerEntry
from fedward.learning.loops import TrainResult
from fedward.metrics.counts import CALIBRATION_BINS, SCORE_BINS, EvalCounts

RecordT = TypeVar("RecordT", ArrayRecord, ConfigRecord, MetricRecord)
MetricValue = int | float | list[int] | list[float]


class RecordKey(StrEnum):
    """Keys of records inside a Flower ``RecordDict``."""

    ARRAYS = "arrays"
    CONFIG = "config"
    METRICS = "metrics"
    SITE = "site"
    SITE_STATS = "site-stats"
    FILES = "files"
    FINAL_MODEL = "final-model"
    PRIVACY = "privacy"
    PERSONALIZED = "personalized"
    VAL_METRICS = "val-metrics"


FINAL_MODEL_ACTION = "final_model"
FINAL_MODEL_MESSAGE = f"{MessageType.QUERY}.{FINAL_MODEL_ACTION}"
PERSONALIZE_ACTION = "personalize"
PERSONALIZE_MESSAGE = f"{MessageType.TRAIN}.{PERSONALIZE_ACTION}"


class MetricKey(StrEnum):
    """Metric names sent by hospitals and written to run folders."""

    NUM_EXAMPLES = "num-examples"
    TRAIN_LOSS = "train-loss"
    TRAIN_ACCURACY = "train-accuracy"
    VAL_LOSS = "val-loss"
    VAL_ACCURACY = "val-accuracy"
    LOSS_SUM = "loss-sum"
    CONFUSION = "confusion-matrix"
    SCORE_HIST = "score-histogram"
    CALIBRATION = "calibration"
    SITE_NAME = "site-name"
    SERVER_ROUND = "server-round"
    PROXIMAL_MU = "proximal-mu"  # set by Flower's FedProx in the train config
    HARMONIZE_SCALE = "harmonize-scale"  # the standard intensity scale (server)
    RUN_ID = "run-id"  # server -> hospital: the run's id, the same after a resume


# --- any record ----------------------------------------------------------------------


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
    data: dict[str, MetricValue] = dict(values)
    return MetricRecord(data)


def site_record(name: str) -> ConfigRecord:
    """The record naming the hospital that sends a reply."""
    return ConfigRecord({MetricKey.SITE_NAME: name})


def site_name(msg: Message) -> str:
    """The hospital's name from its reply, else its node id."""
    if not msg.has_content():  # an error reply carries no content
        return f"node-{msg.metadata.src_node_id}"
    record = msg.content.get(RecordKey.SITE)
    if isinstance(record, ConfigRecord) and MetricKey.SITE_NAME in record:
        return str(record[MetricKey.SITE_NAME])
    return f"node-{msg.metadata.src_node_id}"


# --- weights -------------------------------------------------------------------------


BFLOAT16 = "bfloat16"


def to_arrays(
    model: nn.Module, dtype: str = "float32", exclude: Collection[str] = ()
) -> ArrayRecord:
    """The model's state dict as an ``ArrayRecord`` (copied to CPU).

    Floating tensors travel as ``dtype`` (:func:`encode_state`); ``exclude``
    names keys left out (the site-local normalisation layers).
    """
    state = {
        k: v.detach().cpu() for k, v in model.state_dict().items() if k not in exclude
    }
    return encode_state(state, dtype)


def encode_state(state: Mapping[str, torch.Tensor], dtype: str) -> ArrayRecord:
    """Tensors as an ``ArrayRecord`` whose floating ones are cast to ``dtype``.

    ``float32`` leaves them as they are. ``bfloat16``, which NumPy lacks, travels
    as its 16-bit patterns with the ``Array`` dtype set to ``"bfloat16"``;
    :func:`array_values` turns it back into float32.
    """
    if dtype == "float32":
        return ArrayRecord(torch_state_dict=dict(state))
    arrays: dict[str, Array] = {}
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            arrays[key] = Array(tensor)
        elif dtype == BFLOAT16:
            bits = tensor.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
            data = Array(bits).data
            arrays[key] = Array(BFLOAT16, tuple(tensor.shape), SType.NUMPY, data)
        else:
            arrays[key] = Array(tensor.to(getattr(torch, dtype)))
    return ArrayRecord(arrays)


def encode_arrays(record: ArrayRecord, dtype: str) -> ArrayRecord:
    """An ``ArrayRecord`` of float32 weights re-encoded for transfer as ``dtype``."""
    if dtype == "float32":
        return record
    return encode_state(state_from_arrays(record), dtype)


def array_values(array: Array) -> np.ndarray:
    """An ``Array``'s values without copying them (read-only), bfloat16 widened.

    Reads the ``.npy`` header and views the bytes after it, so a reply's weights
    are not held twice while they are checked and averaged.
    """
    if array.stype != SType.NUMPY:
        raise WeightsError(f"unsupported array serialisation '{array.stype}'")
    buffer = io.BytesIO(array.data)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(buffer)
        read = fmt.read_array_header_1_0 if version == (1, 0) else None
        read = fmt.read_array_header_2_0 if version == (2, 0) else read
        if read is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = read(buffer)
    except ValueError as exc:
        raise WeightsError(f"malformed array: {exc}") from None
    if dtype.hasobject:
        raise WeightsError("arrays of Python objects are refused")
    count = math.prod(shape)
    values = np.frombuffer(array.data, dtype, count, offset=buffer.tell())
    values = values.reshape(shape, order="F" if fortran else "C")
    if array.dtype == BFLOAT16:
        if values.dtype != np.uint16:
            raise WeightsError("bfloat16 array does not hold 16-bit patterns")
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values


def state_from_arrays(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """Tensors (writable copies) of an ``ArrayRecord``, bfloat16 widened."""
    return {key: torch.from_numpy(array_values(record[key]).copy()) for key in record}


def check_arrays(
    reference: ArrayRecord | Mapping[str, torch.Tensor], candidate: ArrayRecord
) -> list[str]:
    """Problems that make ``candidate`` unusable as weights shaped like ``reference``.

    ``reference`` may be a record or a model's own state dict (not serialised
    just to be compared).

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
        want, got = tuple(reference[key].shape), tuple(candidate[key].shape)
        if want != got:
            problems.append(f"'{key}' has shape {got}, expected {want}")
            continue
        values = array_values(candidate[key])
        if np.issubdtype(values.dtype, np.floating) and not _all_finite(values):
            problems.append(f"'{key}' holds NaN or infinite values")
    return problems


def _all_finite(values: np.ndarray, chunk: int = 1 << 20) -> bool:
    flat = values.reshape(-1)
    return all(
        np.isfinite(flat[i : i + chunk]).all() for i in range(0, flat.size, chunk)
    )


def pop_array(arrays: dict[str, np.ndarray], key: str) -> Array:
    """Take ``arrays[key]`` out of the dict as a Flower ``Array``.

    Built so that the values and their serialised bytes are not held twice
    longer than needed: at most two copies exist at any moment.
    """
    values = arrays.pop(key)
    if not values.flags.c_contiguous:
        values = np.ascontiguousarray(values)
    header = io.BytesIO()
    fmt = np.lib.format
    fmt.write_array_header_1_0(header, fmt.header_data_from_array_1_0(values))
    head = header.getvalue()
    data = bytearray(len(head) + values.nbytes)
    data[: len(head)] = head
    if values.nbytes:
        body = np.frombuffer(data, dtype=np.uint8, offset=len(head))
        body[:] = values.reshape(-1).view(np.uint8)
        del body
    shape, dtype = tuple(values.shape), str(values.dtype)
    del values
    return Array(dtype, shape, SType.NUMPY, bytes(data))


def load_arrays(
    model: nn.Module, arrays: ArrayRecord, exclude: Collection[str] = ()
) -> None:
    """Load ``arrays`` into ``model`` after checking them.

    ``arrays`` must hold every key of the model but those in ``exclude`` (which
    keep their values).

    Raises
    ------
    WeightsError
        If keys, shapes or values do not fit the model.
    """
    own = {k: v for k, v in model.state_dict().items() if k not in exclude}
    problems = check_arrays(own, arrays)
    if problems:
        raise WeightsError(problems)
    model.load_state_dict(state_from_arrays(arrays), strict=not exclude)


# --- train replies -------------------------------------------------------------------


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def train_metrics(result: TrainResult) -> MetricRecord:
    """What a train reply says besides the weights: image count, last epoch."""
    last = result.epochs[-1]
    return MetricRecord(
        {
            MetricKey.NUM_EXAMPLES: result.num_examples,
            MetricKey.TRAIN_LOSS: last.train_loss,
            MetricKey.TRAIN_ACCURACY: last.train_accuracy,
            MetricKey.VAL_LOSS: _nan_if_none(last.val_loss),
            MetricKey.VAL_ACCURACY: _nan_if_none(last.val_accuracy),
        }
    )


# what a private round spent: run-level ε, not the site's lifetime or ledger
PRIVACY_KEYS = {
    "dp-epsilon": "run_epsilon",  # this run's ε at the site after the round
    "dp-delta": "delta",
    "dp-unit": "unit",
    "dp-noise-multiplier": "noise_multiplier",
    "dp-max-grad-norm": "max_grad_norm",
    "dp-sample-rate": "sample_rate",
    "dp-steps": "steps",
    "dp-accountant": "accountant",
}


def privacy_record(entry: LedgerEntry) -> ConfigRecord:
    """What a hospital says about a private round: this run's ε so far and δ."""
    return ConfigRecord({k: getattr(entry, f) for k, f in PRIVACY_KEYS.items()})


def _valid_privacy(key: str, value: object) -> bool:
    if key == "dp-unit":
        return value in ("patient", "image")
    if key == "dp-accountant":
        return value in ("rdp", "prv")
    if key == "dp-steps":
        return isinstance(value, int) and value >= 0
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def privacy_from_reply(msg: Message) -> dict[str, Any]:
    """The privacy figures of a train reply (empty if the round was not private).

    Only the keys :func:`privacy_record` writes, with values of their kind, are
    taken: a malformed claim is dropped, not recorded.
    """
    record = None if msg.has_error() else msg.content.get(RecordKey.PRIVACY)
    if not isinstance(record, ConfigRecord):
        return {}
    return {
        k: record[k]
        for k in PRIVACY_KEYS
        if k in record and _valid_privacy(k, record[k])
    }


# --- evaluate replies ----------------------------------------------------------------


def counts_to_metrics(counts: EvalCounts) -> MetricRecord:
    """A hospital's evaluation counts as the ``MetricRecord`` it sends."""
    values: dict[str, MetricValue] = {
        MetricKey.NUM_EXAMPLES: counts.num_examples,
        MetricKey.LOSS_SUM: counts.loss_sum,
        MetricKey.CONFUSION: [int(v) for v in counts.confusion.ravel()],
        MetricKey.SCORE_HIST: [int(v) for v in counts.score_hist.ravel()],
        MetricKey.CALIBRATION: [float(v) for v in counts.calibration.ravel()],
    }
    return MetricRecord(values)


def counts_from_metrics(values: Mapping[str, object], num_classes: int) -> EvalCounts:
    """Check and convert a hospital's reported counts.

    Raises
    ------
    DataError
        If a count is missing, of the wrong size, negative, fractional, or the
        counts do not agree with each other.
    """
    k = num_classes
    cm = _counts(values, MetricKey.CONFUSION, k * k).reshape(k, k)
    hist = _counts(values, MetricKey.SCORE_HIST, k * 2 * SCORE_BINS).reshape(k, 2, -1)
    calib = np.asarray(values.get(MetricKey.CALIBRATION), dtype=np.float64)
    n, loss_sum = values.get(MetricKey.NUM_EXAMPLES), values.get(MetricKey.LOSS_SUM)
    if not isinstance(n, int | float) or int(cm.sum()) != int(n):
        raise DataError("confusion matrix does not add up to num-examples")
    if (hist.sum(axis=(1, 2)) != n).any():
        raise DataError("score histograms do not add up to num-examples")
    if calib.shape != (3 * CALIBRATION_BINS,) or not np.isfinite(calib).all():
        raise DataError("calibration counts are missing or malformed")
    if not isinstance(loss_sum, int | float) or not np.isfinite(loss_sum):
        raise DataError("loss-sum is missing or not finite")
    return EvalCounts(float(loss_sum), int(n), cm, hist, calib.reshape(3, -1))


def _counts(values: Mapping[str, object], key: str, size: int) -> np.ndarray:
    raw = values.get(key)
    if not isinstance(raw, list) or len(raw) != size:
        raise DataError(f"'{key}' must be a list of {size} counts")
    array = np.asarray(raw, dtype=np.float64)
    if (array < 0).any() or (array != np.round(array)).any():
        raise DataError(f"'{key}' holds negative or fractional counts")
    return array.astype(np.int64)


# --- query replies (the pre-training data check) -------------------------------------


def stats_record(stats: Mapping[str, Any]) -> ConfigRecord:
    """A site's aggregate data statistics as the record it sends."""
    return ConfigRecord({RecordKey.SITE_STATS: json.dumps(stats)})


def stats_from_reply(msg: Message) -> dict[str, Any] | None:
    """The statistics in a query reply, or ``None`` if it carries none."""
    record = None if msg.has_error() else msg.content.get(RecordKey.SITE_STATS)
    if not isinstance(record, ConfigRecord):
        return None
    stats: dict[str, Any] = json.loads(str(record[RecordKey.SITE_STATS]))
    return stats


# --- the final model (server -> hospital) and its acknowledgement -------------------


def files_record(files: Mapping[str, bytes]) -> ArrayRecord:
    """Files by name as an ``ArrayRecord`` of byte arrays (sent in chunks)."""
    arrays = {
        name: Array(np.frombuffer(b, dtype=np.uint8)) for name, b in files.items()
    }
    return ArrayRecord(arrays)


def files_from_record(record: ArrayRecord) -> dict[str, bytes]:
    """The files of a :func:`files_record`."""
    return {name: record[name].numpy().tobytes() for name in record}


def final_model_reply(
    accepted: bool, manifest_sha256: str, reason: str
) -> ConfigRecord:
    """A hospital's answer to the final model: accepted, or refused and why."""
    return ConfigRecord(
        {"accepted": accepted, "manifest-sha256": manifest_sha256, "reason": reason}
    )


def final_model_status(msg: Message) -> tuple[bool, str]:
    """Whether a hospital accepted the final model, and its reason if not."""
    if msg.has_error():
        return False, msg.error.reason or "error without a reason"
    record = msg.content.get(RecordKey.FINAL_MODEL)
    if not isinstance(record, ConfigRecord):
        return False, "no answer about the final model"
    return bool(record.get("accepted")), str(record.get("reason", ""))


# --- personalisation replies (after the federation) ---------------------------------


def personalized_counts(
    msg: Message, num_classes: int
) -> tuple[EvalCounts, EvalCounts]:
    """The global and the personalised model's counts in a personalisation reply.

    Raises
    ------
    DataError
        If either set of counts is missing or malformed, or they were not taken
        over the same images (the true labels per class differ).
    """
    if msg.has_error():
        raise DataError(msg.error.reason or "personalisation failed at the site")
    records = [msg.content.get(k) for k in (RecordKey.METRICS, RecordKey.PERSONALIZED)]
    if not all(isinstance(r, MetricRecord) for r in records):
        raise DataError("personalisation reply lacks its two sets of counts")
    global_, personal = (counts_from_metrics(r, num_classes) for r in records)  # type: ignore[arg-type]
    if (global_.confusion.sum(1) != personal.confusion.sum(1)).any():
        raise DataError("personalised and global counts are of different images")
    return global_, personal
