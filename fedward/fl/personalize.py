"""After the federation: each hospital fine-tunes the final model on its own data.

With ``personalize-epochs`` > 0 the server sends the final global model to every
hospital (``train.personalize``); each evaluates it on its held-out images,
fine-tunes it for that many local epochs, evaluates the result on the same
images, keeps the fine-tuned weights and sends back both sets of counts
(:func:`fedward.fl.protocol.personalized_counts` checks they are of the same
images). ``personalization.json`` in the run folder gets the figures per
hospital and pooled, and the counts behind them.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedward.config import FedwardConfig
from fedward.errors import DataError
from fedward.fl.protocol import (
    PERSONALIZE_MESSAGE,
    RecordKey,
    personalized_counts,
    site_name,
)
from fedward.metrics.counts import EvalCounts, pool
from fedward.runfolder import RunFolder

logger = logging.getLogger(__name__)

KINDS = ("global", "personalized")


def personalize(
    grid: Grid,
    config: FedwardConfig,
    arrays: ArrayRecord,
    request: ConfigRecord,
    folder: RunFolder,
) -> dict[str, Any] | None:
    """Ask every hospital to fine-tune ``arrays``; record and return the figures.

    ``request`` is the configuration every evaluation carries (the
    harmonisation scale). Returns ``None`` when ``personalize-epochs`` is 0 or
    no hospital answered.
    """
    if config.personalize_epochs == 0:
        return None
    messages = [
        Message(
            RecordDict({RecordKey.ARRAYS: arrays, RecordKey.CONFIG: request}),
            node,
            PERSONALIZE_MESSAGE,
        )
        for node in grid.get_node_ids()
    ]
    counts: dict[str, tuple[EvalCounts, EvalCounts]] = {}
    for reply in grid.send_and_receive(messages, timeout=config.round_timeout):
        name = site_name(reply)
        try:
            counts[name] = personalized_counts(reply, config.num_classes)
        except DataError as exc:
            logger.warning("personalisation: %s: %s", name, exc)
    if not counts:
        return None
    result = personalization_figures(counts, config.classes)
    folder.write_json(RunFolder.PERSONALIZATION, result)
    for name, figures in result["sites"].items():
        logger.info(
            "personalisation: %s f1 %.3f -> %.3f",
            name,
            figures["global"]["f1"],
            figures["personalized"]["f1"],
        )
    return result


def personalization_figures(
    counts: dict[str, tuple[EvalCounts, EvalCounts]], classes: list[str]
) -> dict[str, Any]:
    """Per hospital and pooled: the global and personalised figures and counts."""
    pooled = tuple(pool(c[i] for c in counts.values()) for i in range(2))
    return {
        "global": {k: pooled[i].figures(classes) for i, k in enumerate(KINDS)},
        "sites": {
            name: {k: c[i].figures(classes) for i, k in enumerate(KINDS)}
            for name, c in sorted(counts.items())
        },
        "counts": {
            name: {k: c[i].to_json() for i, k in enumerate(KINDS)}
            for name, c in [("global", pooled), *sorted(counts.items())]
        },
    }
