"""The hospital's Flower ClientApp: translates messages to :class:`Site` calls."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.load import load_site, read_site, site_for_folder
from fedward.data.partition import simulated_site
from fedward.data.stats import site_statistics
from fedward.fl.delivery import receive_final_model
from fedward.fl.protocol import (
    FINAL_MODEL_ACTION,
    MetricKey,
    RecordKey,
    counts_to_metrics,
    files_from_record,
    final_model_reply,
    get_record,
    load_arrays,
    site_record,
    stats_record,
    to_arrays,
    train_metrics,
)
from fedward.learning.site import Site


@functools.lru_cache(maxsize=16)
def _cached_site(
    config: FedwardConfig, site: SiteConfig | None, partition: tuple[int, int]
) -> Site:
    """Decode a site's images once per process; later rounds reuse them."""
    if site is not None:
        return Site(site.name, load_site(site, config), config)
    name, splits = simulated_site(config, *partition)
    return Site(name, splits, config)


def site_config(node_config: dict[str, Any]) -> SiteConfig | None:
    """The hospital's own settings from its node config, or None when simulated.

    ``site-config`` names the hospital's ``site.toml``; ``data-path`` (with an
    optional ``site-name``) names a data folder directly.
    """
    if path := str(node_config.get("site-config", "")):
        return read_site(Path(path))
    if data_path := str(node_config.get("data-path", "")):
        return site_for_folder(Path(data_path), str(node_config.get("site-name", "")))
    return None


def site_for(context: Context, config: FedwardConfig) -> Site:
    """The site this node serves.

    A deployed hospital names its own data in its node config; a simulated one
    is picked by ``partition-id`` from the run's data.
    """
    node = context.node_config
    partition = (int(node.get("partition-id", 0)), int(node.get("num-partitions", 1)))
    return _cached_site(config, site_config(dict(node)), partition)


def audited(reply: Message, context: Context) -> Message:
    """Record an outbound message exactly as it leaves the site, if asked to.

    With ``audit-dir`` in the node config (or ``FEDWARD_AUDIT_DIR`` set), each
    reply is written there as serialized Flower protobuf bytes, so a hospital
    (or a test) can inspect every byte it sent.
    """
    folder = str(context.node_config.get("audit-dir", "")) or os.environ.get(
        "FEDWARD_AUDIT_DIR", ""
    )
    if folder:
        from flwr.common.serde import message_to_proto

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{os.getpid()}-{reply.metadata.message_type}.bin"
        (out / name).write_bytes(message_to_proto(reply).SerializeToString())
    return reply


def make_client_app(config: FedwardConfig | None = None) -> ClientApp:
    """A ClientApp using ``config``, or the run's config when ``None``."""
    app = ClientApp()

    def resolve(context: Context) -> FedwardConfig:
        return config or FedwardConfig.from_run_config(context.run_config)

    @app.train()
    def train_handler(msg: Message, context: Context) -> Message:
        cfg = resolve(context)
        site = site_for(context, cfg)
        model = site.new_model()
        load_arrays(model, get_record(msg, RecordKey.ARRAYS, ArrayRecord))
        train_config = get_record(msg, RecordKey.CONFIG, ConfigRecord)
        server_round = int(train_config.get(MetricKey.SERVER_ROUND, 0))  # type: ignore[arg-type]
        result = site.fit(model, server_round)
        content = RecordDict(
            {
                RecordKey.ARRAYS: to_arrays(model, cfg.transfer_dtype),
                RecordKey.METRICS: train_metrics(result),
                RecordKey.SITE: site_record(site.name),
            }
        )
        return audited(Message(content=content, reply_to=msg), context)

    @app.evaluate()
    def evaluate_handler(msg: Message, context: Context) -> Message:
        cfg = resolve(context)
        site = site_for(context, cfg)
        model = site.new_model()
        load_arrays(model, get_record(msg, RecordKey.ARRAYS, ArrayRecord))
        counts = site.evaluate(model, cfg.eval_split)
        content = RecordDict(
            {
                RecordKey.METRICS: counts_to_metrics(counts),
                RecordKey.SITE: site_record(site.name),
            }
        )
        return audited(Message(content=content, reply_to=msg), context)

    @app.query()
    def query_handler(msg: Message, context: Context) -> Message:
        """Aggregate statistics of the site's data, for the pre-training check."""
        cfg = resolve(context)
        site = site_for(context, cfg)
        stats = site_statistics(site.data, cfg.classes)
        content = RecordDict(
            {
                RecordKey.SITE_STATS: stats_record(stats),
                RecordKey.SITE: site_record(site.name),
            }
        )
        return audited(Message(content=content, reply_to=msg), context)

    @app.query(FINAL_MODEL_ACTION)
    def final_model_handler(msg: Message, context: Context) -> Message:
        """The signed final model: checked against this site's CA, then kept."""
        site = site_config(dict(context.node_config))
        files = files_from_record(get_record(msg, RecordKey.FILES, ArrayRecord))
        accepted, digest, reason = receive_final_model(site, files, context.run_id)
        content = RecordDict(
            {
                RecordKey.FINAL_MODEL: final_model_reply(accepted, digest, reason),
                RecordKey.SITE: site_record(site.name if site else "simulated"),
            }
        )
        return audited(Message(content=content, reply_to=msg), context)

    return app


app = make_client_app()
