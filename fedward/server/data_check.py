"""Before the first round: compare the hospitals' data from aggregates only."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedward.common.config import FedwardConfig
from fedward.common.keys import RecordKey
from fedward.common.site_stats import compare_sites
from fedward.server.strategy.fedavg import site_name

logger = logging.getLogger(__name__)

DATA_CHECK_FILE = "data-check.json"


def federated_data_check(
    grid: Grid, config: FedwardConfig, run_dir: Path, timeout: float = 600.0
) -> dict[str, Any]:
    """Ask every connected hospital for its aggregate statistics and compare them.

    Warnings (label skew, scanner shift) are logged and, with every site's
    aggregates, written to ``data-check.json`` in the run folder. A hospital that
    fails to answer is noted with its error (a refusal of unapproved code, a data
    problem), not fatal.
    """
    messages = [
        Message(RecordDict({RecordKey.CONFIG: ConfigRecord()}), node, MessageType.QUERY)
        for node in grid.get_node_ids()
    ]
    stats: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        record = None if reply.has_error() else reply.content.get(RecordKey.SITE_STATS)
        if not isinstance(record, ConfigRecord):
            node = f"node {reply.metadata.src_node_id}"
            reason = reply.error.reason if reply.has_error() else None
            failures[node] = reason or "no statistics"
            logger.warning("data check: %s failed: %s", node, failures[node])
            continue
        stats[site_name(reply)] = json.loads(str(record[RecordKey.SITE_STATS]))
    result: dict[str, Any] = {
        "sites-answered": len(stats),
        "sites-failed": len(failures),
        "failures": failures,
    }
    if stats:
        result |= compare_sites(stats, config.classes)
        result["site-statistics"] = stats
        for warning in result["warnings"]:
            logger.warning("data check: %s", warning)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DATA_CHECK_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result
