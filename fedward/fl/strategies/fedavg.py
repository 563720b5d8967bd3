"""FedAvg that rejects bad updates and evaluates with summed confusion matrices."""

from __future__ import annotations

import gc
import logging
import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedward.errors import DataError, WeightsError
from fedward.fl.protocol import (
    MetricKey,
    RecordKey,
    array_values,
    check_arrays,
    counts_from_metrics,
    get_record,
    metric_record,
    pop_array,
    site_name,
)
from fedward.fl.recorder import RunRecorder
from fedward.learning.aggregation import RunningMean
from fedward.metrics.counts import EvalCounts

logger = logging.getLogger(__name__)


def weighted_mean(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted mean of each metric, ignoring NaN (a site without it)."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for record in records:
        metrics = next(iter(record.metric_records.values()))
        weight = float(metrics[weight_key])  # type: ignore[arg-type]
        for key, value in metrics.items():
            if key == weight_key or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                sums[key] = sums.get(key, 0.0) + weight * value
                weights[key] = weights.get(key, 0.0) + weight
    return MetricRecord({k: sums[k] / weights[k] for k in sums if weights[k] > 0})


def _let_go(folded: weakref.ref[ArrayRecord]) -> None:
    """Free a folded reply now if a reference cycle still holds it.

    Flower's record views (``RecordDict.array_records``, used by Flower's own
    checks) link a record and its content in a cycle, which only the cyclic
    garbage collector frees: one collection here keeps the replies of a round
    from piling up until the collector happens to run.
    """
    if folded() is not None:
        logger.debug("a folded reply is still referenced; collecting")
        gc.collect()


class FedwardFedAvg(FedAvg):
    """Flower's FedAvg plus update checks, exact metrics and a run folder.

    Parameters
    ----------
    recorder
        Receives per-hospital and global figures every round.
    class_names
        Class names in label order.
    **kwargs
        Passed to :class:`flwr.serverapp.strategy.FedAvg`.
    """

    def __init__(
        self, *, recorder: RunRecorder, class_names: Sequence[str], **kwargs: Any
    ) -> None:
        super().__init__(
            train_metrics_aggr_fn=weighted_mean,
            arrayrecord_key=RecordKey.ARRAYS,
            configrecord_key=RecordKey.CONFIG,
            **kwargs,
        )
        self.recorder = recorder
        self.class_names = list(class_names)
        self._sent: ArrayRecord | None = None
        self._examples: dict[int, float] = {}
        self._expected_total: float | None = None

    def expect_examples(self, node_id: int, num_examples: float) -> None:
        """How many examples a hospital will weigh its update with.

        Known from the data check and from each accepted update. When every
        hospital sampled for a round is known, updates are scaled as they
        arrive exactly as Flower's FedAvg scales them all at the end
        (:class:`~fedward.learning.aggregation.RunningMean`).
        """
        self._examples[node_id] = float(num_examples)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the global weights sent out, to check replies against them."""
        self._sent = arrays
        messages = list(super().configure_train(server_round, arrays, config, grid))
        nodes = [msg.metadata.dst_node_id for msg in messages]
        known = bool(nodes) and all(n in self._examples for n in nodes)
        self._expected_total = sum(self._examples[n] for n in nodes) if known else None
        return messages

    def _update_problems(self, msg: Message) -> list[str]:
        arrays = msg.content.get(RecordKey.ARRAYS)
        metrics = msg.content.get(RecordKey.METRICS)
        if not isinstance(arrays, ArrayRecord) or not isinstance(metrics, MetricRecord):
            return ["reply lacks weights or metrics"]
        problems = check_arrays(self._sent, arrays) if self._sent is not None else []
        n = metrics.get(MetricKey.NUM_EXAMPLES)
        if not isinstance(n, int) or n <= 0:
            problems.append(f"num-examples must be a positive integer, got {n!r}")
        return problems

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop malformed or non-finite updates, record the rest, then average.

        Each accepted update is folded into a running weighted sum as it comes
        and then let go, so with a lazy ``replies``
        (:func:`fedward.fl.streaming.stream_replies`) the memory stays that of
        one model, whatever the number of hospitals.
        """
        mean = RunningMean(expected_total=self._expected_total)
        kept: list[RecordDict] = []
        site_metrics: dict[str, dict[str, float]] = {}
        for msg in replies:
            if msg.has_error():
                logger.warning(
                    "training failed at node %d: %s",
                    msg.metadata.src_node_id,
                    msg.error.reason,
                )
                continue
            name, problems = site_name(msg), self._update_problems(msg)
            if problems:
                logger.warning("rejected update from %s: %s", name, "; ".join(problems))
                self.recorder.record_rejected(server_round, name, problems)
                continue
            metrics = get_record(msg, RecordKey.METRICS, MetricRecord)
            arrays = get_record(msg, RecordKey.ARRAYS, ArrayRecord)
            weight = float(metrics[self.weighted_by_key])  # type: ignore[arg-type]
            mean.add({k: array_values(arrays[k]) for k in arrays}, weight)
            self.expect_examples(msg.metadata.src_node_id, weight)
            kept.append(RecordDict({RecordKey.METRICS: metrics}))
            site_metrics[name] = {k: float(v) for k, v in metrics.items()}  # type: ignore[arg-type]
            folded = weakref.ref(arrays)
            del msg, arrays
            _let_go(folded)
        self.recorder.record_train(server_round, site_metrics)
        if not mean.count:
            return None, None
        means = mean.result()
        record = ArrayRecord({k: pop_array(means, k) for k in list(means)})
        return record, self.train_metrics_aggr_fn(kept, self.weighted_by_key)

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to continue as this strategy would have.

        FedAvg keeps nothing between rounds. A strategy with server-side state
        (FedAdam's moments) returns it here as tensors, numbers and strings,
        which :meth:`load_state` takes back after a resume.
        """
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from what :meth:`state` returned in an earlier process."""
        if state:
            raise WeightsError(f"FedAvg keeps no state, got {sorted(state)}")

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Sum the hospitals' counts into exact global figures."""
        evaluations: dict[str, EvalCounts] = {}
        for msg in replies:
            if msg.has_error():
                logger.warning("evaluation failed at node %s", msg.metadata.src_node_id)
                continue
            metrics = msg.content.get(RecordKey.METRICS)
            name = site_name(msg)
            try:
                if not isinstance(metrics, MetricRecord):
                    raise DataError(f"{name}: evaluation reply has no metrics")
                counts = counts_from_metrics(metrics, len(self.class_names))
            except DataError as exc:
                logger.warning("rejected evaluation from %s: %s", name, exc)
                continue
            evaluations[name] = counts
        if not evaluations:
            return None
        global_ = self.recorder.record_evaluation(server_round, evaluations)
        return metric_record(global_)
