"""fedward's additions to a Flower strategy, written once for all of them.

:class:`FedwardStrategy` is Flower's ``FedAvg`` plus update checks (malformed,
non-finite, then the round's screening, :mod:`.screening`), exact evaluation
figures from summed confusion matrices and the run recorder. It changes only
the hooks ``configure_train``, ``aggregate_train`` and ``aggregate_evaluate``
and calls the next class's, so placing it before any Flower strategy derived
from ``FedAvg`` (:func:`compose`) gives that strategy the same additions:
``FedAdam``'s server optimiser or ``Krum``'s selection then run on the updates
that passed the checks.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import (
    Array,
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
    privacy_from_reply,
    site_name,
)
from fedward.fl.recorder import RunRecorder
from fedward.fl.strategies.screening import Screen, Verdict, update_norm
from fedward.learning.aggregation import RunningMean
from fedward.metrics.counts import EvalCounts

logger = logging.getLogger(__name__)

StrategyState = dict[str, np.ndarray]
# what Flower's strategies carry from round to round: FedOpt's (FedAdam, FedYogi,
# FedAdagrad) moments and current weights, FedAvgM's momentum and weights
STATE_ATTRIBUTES = ("current_arrays", "m_t", "v_t", "momentum_vector")
STATE_KINDS = ("record", "dict", "list")


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


class FedwardStrategy(FedAvg):
    """A Flower strategy plus update checks, exact metrics and a run folder.

    Parameters
    ----------
    recorder
        Receives per-hospital and global figures every round.
    class_names
        Class names in label order.
    screen
        The round's screening of updates (norm bound, direction check).
    **kwargs
        Passed to the Flower strategy this class is composed with.
    """

    def __init__(
        self,
        *,
        recorder: RunRecorder,
        class_names: Sequence[str],
        screen: Screen | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            train_metrics_aggr_fn=weighted_mean,
            arrayrecord_key=RecordKey.ARRAYS,
            configrecord_key=RecordKey.CONFIG,
            **kwargs,
        )
        self.recorder = recorder
        self.class_names = list(class_names)
        self.screen = screen or Screen(norm_bound=0.0, min_cosine=-1.0)
        self._sent: ArrayRecord | None = None
        # node id -> hospital (from the data check and replies), to name failures
        self.node_names: dict[int, str] = {}
        # node id -> examples its update is weighed with (data check, replies)
        self._examples: dict[int, float] = {}
        self._expected_total: float | None = None

    @property
    def streams(self) -> bool:
        """Whether replies are folded into the mean one at a time.

        True when the composed strategy aggregates by FedAvg's example-weighted
        mean (FedAvg, FedProx); the others (server optimisers, robust rules)
        are handed the round's accepted replies together.
        """
        base = super().aggregate_train
        return getattr(base, "__func__", None) is FedAvg.aggregate_train

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

    def _screened(
        self, candidates: list[tuple[str, Message]]
    ) -> list[tuple[str, Message, Verdict]]:
        """Each well-formed reply with the screening's verdict on it."""
        if self._sent is None or not self.screen.active:
            return [(name, msg, Verdict()) for name, msg in candidates]
        sent = _numpy(self._sent)
        replies = [
            _numpy(cast(ArrayRecord, msg.content[RecordKey.ARRAYS]))
            for _, msg in candidates
        ]
        verdicts = self.screen.verdicts(sent, replies)
        return [
            (name, msg, verdict)
            for (name, msg), verdict in zip(candidates, verdicts, strict=True)
        ]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop malformed, non-finite and outlying updates, then aggregate.

        Rejections and the accepted hospitals' training figures are recorded.
        With FedAvg's mean (:attr:`streams`) each reply is folded in as it
        arrives and let go, so the server holds one model whatever the number
        of hospitals (with screening on, each update waits on disk until the
        round's median is known); any other strategy aggregates what is left.
        """
        if self.streams:
            return self._aggregate_streamed(server_round, replies)
        return self._aggregate_held(server_round, replies)

    def _train_reply(
        self, server_round: int, msg: Message
    ) -> tuple[str, MetricRecord, ArrayRecord] | None:
        """A train reply's hospital, figures and weights; ``None`` if not usable."""
        node = msg.metadata.src_node_id
        if msg.has_error():  # a failure, or a refusal (e.g. privacy budget)
            reason = msg.error.reason or f"error code {msg.error.code}"
            name = self.node_names.get(node, f"node-{node}")
            logger.warning("training failed at %s: %s", name, reason)
            self.recorder.record_error(server_round, name, reason)
            return None
        name, problems = site_name(msg), self._update_problems(msg)
        self.node_names[node] = name
        if problems:
            self._reject(server_round, name, problems)
            return None
        metrics = get_record(msg, RecordKey.METRICS, MetricRecord)
        return name, metrics, get_record(msg, RecordKey.ARRAYS, ArrayRecord)

    def _aggregate_streamed(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        mean = RunningMean(expected_total=self._expected_total)
        kept: list[RecordDict] = []
        site_metrics: dict[str, dict[str, float]] = {}
        waiting: list[_Waiting] = []

        def fold(
            name: str,
            metrics: MetricRecord,
            values: Mapping[str, np.ndarray],
            privacy: Any,
        ) -> None:
            mean.add(values, float(metrics[self.weighted_by_key]))  # type: ignore[arg-type]
            kept.append(RecordDict({RecordKey.METRICS: metrics}))
            site_metrics[name] = {k: float(v) for k, v in metrics.items()}  # type: ignore[arg-type]
            if privacy:
                self.recorder.record_privacy(server_round, name, privacy)

        screening = self.screen.active and self._sent is not None
        sent = _numpy(self._sent) if screening and self._sent is not None else {}
        with tempfile.TemporaryDirectory(prefix="fedward-round-") as spill:
            for msg in replies:
                usable = self._train_reply(server_round, msg)
                if usable is None:
                    continue
                name, metrics, arrays = usable
                weight = float(metrics[self.weighted_by_key])  # type: ignore[arg-type]
                self.expect_examples(msg.metadata.src_node_id, weight)
                values = {k: array_values(arrays[k]) for k in arrays}
                privacy = privacy_from_reply(msg)
                if screening:  # wait on disk for the round's median
                    path = Path(spill) / str(len(waiting))
                    norm = update_norm(sent, values)
                    waiting.append(
                        _Waiting.save(path, name, metrics, values, privacy, norm)
                    )
                else:
                    fold(name, metrics, values, privacy)
                folded = weakref.ref(arrays)
                del msg, arrays, values, usable
                _let_go(folded)
            if waiting:
                self._fold_screened(
                    server_round, sent, waiting, mean, kept, site_metrics
                )
        self.recorder.record_train(server_round, site_metrics)
        if not mean.count:
            return None, None
        means = mean.result()
        record = ArrayRecord({k: pop_array(means, k) for k in list(means)})
        return record, self.train_metrics_aggr_fn(kept, self.weighted_by_key)

    def _fold_screened(
        self,
        server_round: int,
        sent: Mapping[str, np.ndarray],
        waiting: list[_Waiting],
        mean: RunningMean,
        kept: list[RecordDict],
        site_metrics: dict[str, dict[str, float]],
    ) -> None:
        """Screen the updates that waited on disk, then fold the accepted ones."""
        # the norms were measured as the updates arrived: only the direction
        # check (off by default) reads them back, all at once
        verdicts = self.screen.verdicts(
            sent, [w.lazy() for w in waiting], [w.norm for w in waiting]
        )
        for item, verdict in zip(waiting, verdicts, strict=True):
            if verdict.problems:
                self._reject(server_round, item.name, verdict.problems)
                continue
            mean.add(item.lazy(), float(item.metrics[self.weighted_by_key]))  # type: ignore[arg-type]
            kept.append(RecordDict({RecordKey.METRICS: item.metrics}))
            figures = {k: float(v) for k, v in item.metrics.items()}  # type: ignore[arg-type]
            geometry = {
                "update-norm-ratio": verdict.norm_ratio,
                "update-cosine": verdict.cosine,
            }
            figures |= {k: v for k, v in geometry.items() if math.isfinite(v)}
            site_metrics[item.name] = figures
            if item.privacy:
                self.recorder.record_privacy(server_round, item.name, item.privacy)

    def _aggregate_held(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted: list[Message] = []
        candidates: list[tuple[str, Message]] = []
        for msg in replies:
            if self._train_reply(server_round, msg) is not None:
                candidates.append((site_name(msg), msg))
        site_metrics: dict[str, dict[str, float]] = {}
        for name, msg, verdict in self._screened(candidates):
            if verdict.problems:
                self._reject(server_round, name, verdict.problems)
                continue
            accepted.append(msg)
            reported = msg.content[RecordKey.METRICS]
            site_metrics[name] = {k: float(v) for k, v in reported.items()}  # type: ignore[arg-type]
            geometry = {
                "update-norm-ratio": verdict.norm_ratio,
                "update-cosine": verdict.cosine,
            }
            site_metrics[name] |= {
                k: v for k, v in geometry.items() if math.isfinite(v)
            }
            if privacy := privacy_from_reply(msg):
                self.recorder.record_privacy(server_round, name, privacy)
        self.recorder.record_train(server_round, site_metrics)
        arrays, metrics = super().aggregate_train(server_round, accepted)
        return self._like_sent(arrays), metrics

    def _reject(self, server_round: int, name: str, problems: list[str]) -> None:
        logger.warning("rejected update from %s: %s", name, "; ".join(problems))
        self.recorder.record_rejected(server_round, name, problems)

    def _like_sent(self, arrays: ArrayRecord | None) -> ArrayRecord | None:
        """The aggregate in the dtypes of the weights sent out.

        Server optimisers compute in float64; the global model stays as it was.
        (Only the averaging strategies, which do not come here, take a 16-bit
        ``transfer-dtype``, so what was sent is the global model's own dtype.)
        """
        if arrays is None or self._sent is None:
            return arrays
        dtypes = {k: array_values(a).dtype for k, a in self._sent.items()}
        if all(arrays[k].dtype == str(dtypes.get(k, arrays[k].dtype)) for k in arrays):
            return arrays
        return ArrayRecord(
            {
                k: Array(np.asarray(a.numpy(), dtype=dtypes.get(k)))
                for k, a in arrays.items()
            }
        )

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Sum the hospitals' counts into exact global figures."""
        evaluations: dict[str, EvalCounts] = {}
        validations: dict[str, EvalCounts] = {}
        for msg in replies:
            if msg.has_error():
                logger.warning("evaluation failed at node %s", msg.metadata.src_node_id)
                continue
            metrics = msg.content.get(RecordKey.METRICS)
            val = msg.content.get(RecordKey.VAL_METRICS)
            name = site_name(msg)
            self.node_names[msg.metadata.src_node_id] = name
            try:
                if not isinstance(metrics, MetricRecord):
                    raise DataError(f"{name}: evaluation reply has no metrics")
                counts = counts_from_metrics(metrics, len(self.class_names))
                if isinstance(val, MetricRecord):
                    validations[name] = counts_from_metrics(val, len(self.class_names))
            except DataError as exc:
                logger.warning("rejected evaluation from %s: %s", name, exc)
                continue
            evaluations[name] = counts
        if not evaluations:
            return None
        global_ = self.recorder.record_evaluation(server_round, evaluations)
        if sum(v.num_examples for v in validations.values()):
            self.recorder.record_selection(server_round, validations)
        return metric_record(global_)

    # --- state carried between rounds (resuming a run) ---------------------------

    def state(self) -> StrategyState:
        """What the strategy carries between rounds, as named NumPy arrays.

        FedAdam, FedYogi and FedAdagrad keep their moments (``m_t``, ``v_t``)
        and the current weights, FedAvgM its momentum and weights; the other
        strategies carry nothing. :meth:`load_state` puts it back.
        """
        out: StrategyState = {}
        for attribute in STATE_ATTRIBUTES:
            value = getattr(self, attribute, None)
            if isinstance(value, ArrayRecord):
                items = [(k, a.numpy()) for k, a in value.items()]
                kind = "record"
            elif isinstance(value, dict) and value:
                items = list(value.items())
                kind = "dict"
            elif isinstance(value, list) and value:
                items = [(str(i), v) for i, v in enumerate(value)]
                kind = "list"
            else:
                continue
            for key, array in items:
                out[f"{attribute}/{kind}/{key}"] = np.array(array, copy=True)
        return out

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned (before the next round starts)."""
        grouped: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = {}
        for name, array in state.items():
            attribute, kind, key = [*name.split("/", 2), "", ""][:3]
            if attribute not in STATE_ATTRIBUTES or kind not in STATE_KINDS:
                raise WeightsError(f"not a strategy state entry: {name!r}")
            grouped.setdefault((attribute, kind), []).append((key, np.asarray(array)))
        for (attribute, kind), items in grouped.items():
            value: object
            if kind == "record":
                value = ArrayRecord({k: Array(a.copy()) for k, a in items})
            elif kind == "dict":
                value = {k: a.copy() for k, a in items}
            else:
                value = [a.copy() for _, a in sorted(items, key=lambda i: int(i[0]))]
            setattr(self, attribute, value)


def _numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: array_values(a) for k, a in record.items()}


class _LazyArrays(Mapping[str, np.ndarray]):
    """A waiting update's arrays, opened one key at a time."""

    def __init__(self, waiting: _Waiting) -> None:
        self._waiting = waiting
        self._index = {k: i for i, k in enumerate(waiting.keys)}

    def __getitem__(self, key: str) -> np.ndarray:
        path = self._waiting.folder / f"{self._index[key]}.npy"
        array: np.ndarray = np.load(path, mmap_mode="r")
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._waiting.keys)

    def __len__(self) -> int:
        return len(self._waiting.keys)


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


@dataclass(frozen=True)
class _Waiting:
    """An accepted-so-far update kept on disk until the round is screened."""

    name: str
    metrics: MetricRecord
    folder: Path
    keys: tuple[str, ...]
    privacy: Any
    norm: float

    @classmethod
    def save(
        cls,
        folder: Path,
        name: str,
        metrics: MetricRecord,
        values: Mapping[str, np.ndarray],
        privacy: Any,
        norm: float,
    ) -> _Waiting:
        folder.mkdir()
        for i, array in enumerate(values.values()):
            np.save(folder / f"{i}.npy", array)
        return cls(name, metrics, folder, tuple(values), privacy, norm)

    def lazy(self) -> Mapping[str, np.ndarray]:
        """The arrays, each mapped from disk only when asked for."""
        return _LazyArrays(self)


@functools.cache
def compose(base: type[FedAvg]) -> type[FedwardStrategy]:
    """``base`` (a Flower strategy derived from FedAvg) with fedward's additions.

    The class is made once per base and named after it (``FedwardFedAdam``).
    """
    if base is FedAvg:
        return FedwardStrategy
    if not issubclass(base, FedAvg):
        raise TypeError(f"{base.__name__} does not derive from Flower's FedAvg")
    made = type(f"Fedward{base.__name__}", (FedwardStrategy, base), {})
    return cast(type[FedwardStrategy], made)
