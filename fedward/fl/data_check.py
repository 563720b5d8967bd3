"""Before the first round: compare the hospitals' data from aggregates only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedward.config import FedwardConfig
from fedward.data.harmonize import standard_scale
from fedward.data.stats import compare_sites
from fedward.fl.protocol import RecordKey, site_name, stats_from_reply
from fedward.runfolder import RunFolder

logger = logging.getLogger(__name__)


def federated_data_check(
    grid: Grid,
    config: FedwardConfig,
    folder: RunFolder,
    timeout: float = 600.0,
    on_site: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Ask every connected hospital for its aggregate statistics and compare them.

    Warnings (label skew, scanner shift) are logged and, with every site's
    aggregates, written to ``data-check.json`` in the run folder. A hospital that
    fails to answer is noted with its error (a refusal of unapproved code, a data
    problem), not fatal. ``on_site`` is called with each answering hospital's
    node id and statistics.
    """
    messages = [
        Message(RecordDict({RecordKey.CONFIG: ConfigRecord()}), node, MessageType.QUERY)
        for node in grid.get_node_ids()
    ]
    stats: dict[str, dict[str, Any]] = {}
    nodes: dict[int, str] = {}
    failures: dict[str, str] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        site_stats = stats_from_reply(reply)
        if site_stats is None:
            node = f"node {reply.metadata.src_node_id}"
            reason = reply.error.reason if reply.has_error() else None
            failures[node] = reason or "no statistics"
            logger.warning("data check: %s failed: %s", node, failures[node])
            continue
        stats[site_name(reply)] = site_stats
        nodes[reply.metadata.src_node_id] = site_name(reply)
        if on_site is not None:
            on_site(reply.metadata.src_node_id, site_stats)
    result: dict[str, Any] = {
        "sites-answered": len(stats),
        "sites-failed": len(failures),
        "failures": failures,
        "nodes": {str(node): name for node, name in nodes.items()},
    }
    if stats:
        result |= compare_sites(stats, config.classes)
        result["site-statistics"] = stats
        for warning in result["warnings"]:
            logger.warning("data check: %s", warning)
    if config.harmonize == "histogram":
        result["harmonize-scale"] = harmonize_scale(stats)
        logger.info("harmonisation: standard scale %s", result["harmonize-scale"])
    folder.write_json(RunFolder.DATA_CHECK, result)
    return result


def harmonize_scale(stats: dict[str, dict[str, Any]]) -> list[float]:
    """The standard intensity scale from the sites' mean landmarks only.

    Raises
    ------
    DataError
        If no hospital reported landmarks.
    """
    landmarks = [s.get("intensity", {}).get("landmarks", {}) for s in stats.values()]
    return standard_scale(
        [(m.get("mean", []), int(m.get("images", 0))) for m in landmarks]
    )
