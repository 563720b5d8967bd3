"""Secure aggregation around a FedAvg-family strategy (the server's Flower layer).

:class:`SecureAggregation` composes once: the wrapped strategy still samples the
hospitals and builds the train and evaluate messages (its ``configure_*``); this
class runs the secure-sum steps around them (:mod:`.aggregator`) and replaces its
``aggregate_*`` with the unmasked sums. Every step waits at most
``round-timeout``. Below the threshold at any step the sum is abandoned: the
global model stays as it was (or no evaluation is recorded) and the run goes on
with the next round.

What the server keeps, per hospital, is its name and whether it took part;
the run folder's ``secure-aggregation.json`` holds the parameters and each sum's
outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedward.config import FedwardConfig
from fedward.errors import SecureAggregationError
from fedward.fl.protocol import metric_record
from fedward.fl.recorder import SECURE_NO_TABLE, RunRecorder
from fedward.fl.secagg.aggregator import SecureSum
from fedward.fl.secagg.inputs import codec, shapes, train_sum
from fedward.fl.secagg.party import Session, majority
from fedward.fl.secagg.quantise import COUNTS, decode_eval_counts, eval_counts_size
from fedward.fl.secagg.records import (
    SECAGG,
    Stage,
    advertise_request,
    collect_request,
    consistency_request,
    reply_bundle,
    reply_masked,
    reply_revealed,
    reply_shares,
    reply_signature,
    share_request,
    unmask_request,
)
from fedward.runfolder import RunFolder

logger = logging.getLogger(__name__)
T = TypeVar("T")


def skip_data_check(folder: RunFolder) -> None:
    """Record that the per-hospital data check does not run in secure mode."""
    folder.write_json(
        RunFolder.DATA_CHECK,
        {
            "skipped": "secure aggregation: the data check compares each "
            "hospital's statistics, which the server must not see",
            "sites-answered": 0,
            "sites-failed": 0,
            "failures": {},
        },
    )


class SecureAggregation(Strategy):
    """A strategy whose aggregates are computed by secure aggregation.

    Parameters
    ----------
    inner
        Samples hospitals and builds the messages (FedAvg or a subclass whose
        aggregate is the example-weighted mean).
    config
        The run's settings (threshold, clipping, timeout).
    recorder
        Receives the global figures and each hospital's participation.
    """

    def __init__(
        self, inner: Strategy, config: FedwardConfig, recorder: RunRecorder
    ) -> None:
        self.inner = inner
        self.config = config
        self.recorder = recorder
        self.folder = recorder.folder
        self._grid: Grid | None = None
        self._sums: dict[str, SecureSum | None] = {}
        self._global: dict[str, np.ndarray] = {}
        self._rounds: list[dict[str, Any]] = []
        self._write()

    def summary(self) -> None:
        """Log the wrapped strategy's settings and the secure ones."""
        self.inner.summary()
        logger.info(
            "secure aggregation: threshold %s, norm bound %g, clip range %g, "
            "max examples %d", self.config.secure_threshold or "more than half",
            self.config.secure_norm_bound, self.config.secure_clip_range,
            self.config.secure_max_examples,
        )  # fmt: skip

    # --- messages ----------------------------------------------------------------

    def _ask(
        self, action: str, records: Mapping[int, ConfigRecord], server_round: int
    ) -> dict[int, Message]:
        if self._grid is None:
            raise SecureAggregationError("no grid to send on")
        messages = [
            Message(
                RecordDict({SECAGG: record}),
                node,
                Stage.message_type(action),
                group_id=str(server_round),
            )
            for node, record in records.items()
        ]
        replies: dict[int, Message] = {}
        for reply in self._grid.send_and_receive(
            messages, timeout=self.config.round_timeout
        ):
            node = reply.metadata.src_node_id
            if reply.has_error():
                logger.warning("secure %s: node %d failed: %s", action, node,
                               reply.error.reason)  # fmt: skip
            else:
                replies[node] = reply
        return replies

    @staticmethod
    def _read(
        replies: Mapping[int, Message], read: Callable[[Message], T]
    ) -> dict[int, T]:
        out: dict[int, T] = {}
        for node, reply in replies.items():
            try:
                out[node] = read(reply)
            except SecureAggregationError as exc:
                logger.warning("secure aggregation: node %d: %s", node, exc)
        return out

    # --- steps 1-2 before, 3-5 after the train/evaluate messages ----------------------

    def _configure(
        self, server_round: int, kind: str, messages: list[Message], grid: Grid
    ) -> list[Message]:
        self._grid = grid
        self._sums[kind] = None
        nodes = [m.metadata.dst_node_id for m in messages]
        try:
            if len(nodes) < 2:
                raise SecureAggregationError(f"{len(nodes)} hospital(s) sampled")
            threshold = self.config.secure_threshold or majority(len(nodes))
            if not majority(len(nodes)) <= threshold <= len(nodes):
                raise SecureAggregationError(
                    f"threshold {threshold} for {len(nodes)} hospitals: it must be "
                    "more than half of them and at most all"
                )
            session = Session(
                grid.run.run_id, server_round, kind, threshold, len(nodes)
            )
            total = SecureSum(session, nodes)
            self._sums[kind] = total
            ask = {n: advertise_request(session) for n in nodes}
            u1 = total.advertised(
                self._read(self._ask(Stage.ADVERTISE, ask, server_round), reply_bundle)
            )
            ask = {n: share_request(session, u1) for n in total.peers}
            routed = total.shared(
                self._read(self._ask(Stage.SHARE, ask, server_round), reply_shares)
            )
        except SecureAggregationError as exc:
            self._abort(server_round, kind, str(exc))
            return []
        out = []
        for msg in messages:  # they share one content: give each its own
            node, meta = msg.metadata.dst_node_id, msg.metadata
            if node in routed:
                content = RecordDict(
                    {
                        **msg.content,
                        SECAGG: collect_request(session, total.u2, routed[node]),
                    }
                )
                out.append(
                    Message(content, node, meta.message_type, group_id=meta.group_id)
                )
        return out

    def _finish(
        self,
        server_round: int,
        kind: str,
        replies: Iterable[Message],
        shape: dict[str, tuple[int, np.dtype[np.generic]]],
    ) -> tuple[SecureSum, dict[str, np.ndarray]] | None:
        total = self._sums.get(kind)
        if total is None:  # abandoned before the messages went out
            return None
        try:
            answered = {}
            for m in replies:
                if m.has_error():
                    logger.warning("secure %s: node %d failed: %s", kind,
                                   m.metadata.src_node_id, m.error.reason)  # fmt: skip
                else:
                    answered[m.metadata.src_node_id] = m
            u3 = total.collected(self._read(answered, reply_masked), shape)
            session = total.session
            ask = {n: consistency_request(session, u3) for n in u3}
            signatures = total.confirmed(
                self._read(
                    self._ask(Stage.CONSISTENCY, ask, server_round), reply_signature
                )
            )
            ask = {n: unmask_request(session, u3, signatures) for n in signatures}
            summed = total.unmasked(
                self._read(self._ask(Stage.UNMASK, ask, server_round), reply_revealed)
            )
        except SecureAggregationError as exc:
            self._abort(server_round, kind, str(exc))
            return None
        return total, summed

    # --- Strategy ----------------------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample as the wrapped strategy does, then agree keys and share secrets."""
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._global = {k: arrays[k].numpy() for k in arrays}
        return self._configure(server_round, "train", messages, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Unmask the sum of the weighted updates: the new global weights."""
        done = self._finish(server_round, "train", replies, shapes(self._global, 0))
        if done is None:
            return None, None
        total, summed = done
        try:
            result = train_sum(self.config, total.session.parties, self._global, summed)
        except ValueError as exc:
            self._abort(server_round, "train", str(exc))
            return None, None
        figures = {
            "num-examples": result.num_examples,
            "train-loss": result.train_loss,
            "train-accuracy": result.train_accuracy,
            "quantisation-error-bound": result.error_bound,
        }
        self._record(server_round, total, figures)
        arrays = ArrayRecord(
            {k: Array(np.asarray(v)) for k, v in result.arrays.items()}
        )
        return arrays, metric_record(figures)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample as the wrapped strategy does, then agree keys and share secrets."""
        messages = list(
            self.inner.configure_evaluate(server_round, arrays, config, grid)
        )
        return self._configure(server_round, "evaluate", messages, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Unmask the summed counts: exact pooled figures."""
        k = self.config.num_classes
        done = self._finish(
            server_round, "evaluate", replies, shapes(None, eval_counts_size(k))
        )
        if done is None:
            return None
        total, summed = done
        counts = decode_eval_counts(summed[COUNTS], k)
        self._record(server_round, total, {"num-examples": counts.num_examples})
        figures = self.recorder.record_evaluation(
            server_round, {"all hospitals": counts}, per_site=False
        )
        return metric_record(figures)

    # --- records -----------------------------------------------------------------

    def _record(
        self, server_round: int, total: SecureSum, figures: Mapping[str, Any]
    ) -> None:
        kind = total.session.kind
        names = total.names()
        took_part = {names[n]: n in total.u3 for n in total.nodes}
        outcome = {
            "outcome": "aggregated",
            "threshold": total.threshold,
            "hospitals-asked": len(total.nodes),
            "in-sum": len(total.u3),
            "recovered-after-dropping": len(set(total.u3) - set(total.revealers)),
            "dropped-before-input": len(set(total.u2) - set(total.u3)),
            **figures,
        }
        logger.info(
            "secure %s round %d: sum of %d hospital(s) (threshold %d)",
            kind, server_round, len(total.u3), total.threshold,
        )  # fmt: skip
        self.recorder.record_secure(server_round, kind, took_part, outcome)
        self._rounds.append({"round": server_round, "stage": kind, **outcome})
        self._write()

    def _abort(self, server_round: int, kind: str, reason: str) -> None:
        total = self._sums.get(kind)
        names = total.names() if total is not None else {}
        logger.warning(
            "secure %s round %d abandoned: %s; the global model stays as it was",
            kind, server_round, reason,
        )  # fmt: skip
        outcome = {"outcome": "aborted", "reason": reason}
        self.recorder.record_secure(
            server_round, kind, dict.fromkeys(names.values(), False), outcome
        )
        self._rounds.append({"round": server_round, "stage": kind, **outcome})
        self._sums[kind] = None
        self._write()

    def _write(self) -> None:
        cfg = self.config
        self.folder.write_json(
            RunFolder.SECURE,
            {
                "secure-aggregation": True,
                "per-hospital": SECURE_NO_TABLE,
                "protocol": "Bonawitz et al. 2017 (active server): X25519, "
                "ChaCha20 PRG via HKDF-SHA256, Shamir over GF(2^128) "
                "(pycryptodome), ChaCha20-Poly1305 sealed shares, ECDSA P-384 "
                "signatures by CA-certified node keys, consistency check",
                "threshold": cfg.secure_threshold or "more than half of the sampled",
                "norm-bound": cfg.secure_norm_bound,
                "clip-range": cfg.secure_clip_range,
                "max-examples": cfg.secure_max_examples,
                "update-ring": "2**32",
                "counts-ring": "2**64, float sums in fixed point 2**-24",
                "scale-for-3-hospitals": codec(cfg, 3).scale,
                "rounds": self._rounds,
            },
        )
