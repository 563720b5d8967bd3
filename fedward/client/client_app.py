"""The hospital's Flower ClientApp: translates messages to :class:`Site` calls."""

from __future__ import annotations

import functools
import math
from pathlib import Path

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from fedward.client.site import Site, load_site_data
from fedward.common.config import FedwardConfig
from fedward.common.keys import MetricKey, RecordKey
from fedward.common.weights import get_record, load_arrays, to_arrays
from fedward.simulation.partition import simulated_site


@functools.lru_cache(maxsize=16)
def _cached_site(
    config: FedwardConfig, data_path: str, site_name: str, partition: tuple[int, int]
) -> Site:
    """Decode a site's images once per process; later rounds reuse them."""
    if data_path:
        name = site_name or Path(data_path).name
        return Site(name, load_site_data(config, Path(data_path)), config)
    name, splits = simulated_site(config, *partition)
    return Site(name, splits, config)


def site_for(context: Context, config: FedwardConfig) -> Site:
    """The site this node serves.

    A deployed hospital names its own ``data-path`` (and ``site-name``) in its node
    config; a simulated one is picked by ``partition-id`` from the run's data.
    """
    node = context.node_config
    data_path = str(node.get("data-path", ""))
    partition = (int(node.get("partition-id", 0)), int(node.get("num-partitions", 1)))
    return _cached_site(config, data_path, str(node.get("site-name", "")), partition)


def _site_record(site: Site) -> ConfigRecord:
    return ConfigRecord({MetricKey.SITE_NAME: site.name})


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


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
        last = result.epochs[-1]
        metrics = MetricRecord(
            {
                MetricKey.NUM_EXAMPLES: result.num_examples,
                MetricKey.TRAIN_LOSS: last.train_loss,
                MetricKey.TRAIN_ACCURACY: last.train_accuracy,
                MetricKey.VAL_LOSS: _nan_if_none(last.val_loss),
                MetricKey.VAL_ACCURACY: _nan_if_none(last.val_accuracy),
            }
        )
        content = RecordDict(
            {
                RecordKey.ARRAYS: to_arrays(model),
                RecordKey.METRICS: metrics,
                RecordKey.SITE: _site_record(site),
            }
        )
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate_handler(msg: Message, context: Context) -> Message:
        cfg = resolve(context)
        site = site_for(context, cfg)
        model = site.new_model()
        load_arrays(model, get_record(msg, RecordKey.ARRAYS, ArrayRecord))
        result = site.evaluate(model, cfg.eval_split)
        metrics = MetricRecord(
            {
                MetricKey.NUM_EXAMPLES: result.num_examples,
                MetricKey.LOSS_SUM: result.loss_sum,
                MetricKey.CONFUSION: [int(v) for v in result.confusion.ravel()],
            }
        )
        content = RecordDict(
            {RecordKey.METRICS: metrics, RecordKey.SITE: _site_record(site)}
        )
        return Message(content=content, reply_to=msg)

    return app


app = make_client_app()
