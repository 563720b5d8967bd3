"""The hospital's Flower ClientApp: translates messages to :class:`Site` calls."""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.load import load_site, read_site, site_for_folder
from fedward.data.partition import simulated_site
from fedward.data.stats import site_statistics
from fedward.errors import PrivacyError
from fedward.fl.delivery import receive_final_model
from fedward.fl.protocol import (
    FINAL_MODEL_ACTION,
    PERSONALIZE_ACTION,
    MetricKey,
    RecordKey,
    counts_to_metrics,
    files_from_record,
    final_model_reply,
    get_record,
    privacy_record,
    site_record,
    stats_record,
    to_arrays,
    train_metrics,
)
from fedward.fl.secagg.client import (
    Hooks,
    register_secure_handlers,
    require_secure_mod,
    secure_evaluate_reply,
    secure_train_reply,
)
from fedward.fl.site_state import LocalState, global_model, harmonize_scale
from fedward.learning.private_site import private_training
from fedward.learning.site import Site, TrainHook

logger = logging.getLogger(__name__)
# Flower's ErrorCode.CLIENT_APP_RAISED_EXCEPTION: the app refused the task
REFUSED = 2


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


def run_id(context: Context) -> str:
    """The run a ledger entry belongs to: Flower's run id."""
    return str(context.run_id)


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


def _request(
    msg: Message, context: Context, cfg: FedwardConfig
) -> tuple[Site, ConfigRecord, nn.Module, LocalState]:
    """A request's site, config and global model.

    The site's images are harmonised as the server asks; the model carries the
    site's own normalisation state (``local-norm``).
    """
    config = get_record(msg, RecordKey.CONFIG, ConfigRecord)
    site = site_for(context, cfg).harmonized(harmonize_scale(config))
    arrays = get_record(msg, RecordKey.ARRAYS, ArrayRecord)
    model, local = global_model(site, arrays, context, site_config(context.node_config))
    return site, config, model, local


def make_client_app(
    config: FedwardConfig | None = None, *, hook: TrainHook | None = None
) -> ClientApp:
    """A ClientApp using ``config``, or the run's config when ``None``.

    ``hook`` is for simulations only: it lets ``fedward simulate`` make a
    hospital misbehave to test the server's defences; the deployed app has none.
    """

    def resolve(context: Context) -> FedwardConfig:
        return config or FedwardConfig.from_run_config(context.run_config)

    secure = Hooks(resolve, site_config, site_for, audited)
    app = ClientApp(mods=[require_secure_mod(secure)])
    register_secure_handlers(app, secure)

    @app.train()
    def train_handler(msg: Message, context: Context) -> Message:
        cfg = resolve(context)
        site, train_config, model, local = _request(msg, context, cfg)
        server_round = int(train_config.get(MetricKey.SERVER_ROUND, 0))  # type: ignore[arg-type]
        mu = float(train_config.get(MetricKey.PROXIMAL_MU, 0.0))  # type: ignore[arg-type]
        sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
        trainer = hook.before_fit(site, server_round) if hook else site
        try:  # the hospital's privacy policy, budget and ledger decide first
            private = private_training(
                site_config(dict(context.node_config)), site.name, cfg
            )
            if private is None:
                result = trainer.fit(model, server_round, proximal_mu=mu)
                spent = None
            else:
                result, spent = private.fit(
                    trainer, model, server_round, run_id(context), proximal_mu=mu
                )
        except PrivacyError as exc:
            logger.warning("%s", exc)
            refusal = Error(code=REFUSED, reason=str(exc))
            return audited(Message(refusal, reply_to=msg), context)
        local.save(model)
        if hook:
            model.load_state_dict(
                hook.after_fit(site, server_round, sent, model.state_dict())
            )
        if cfg.secure_aggregation:  # only a masked sum leaves (fl/secagg)
            received = get_record(msg, RecordKey.ARRAYS, ArrayRecord)
            return secure_train_reply(
                secure, msg, context, site, received, model, result
            )
        content = RecordDict(
            {
                RecordKey.ARRAYS: to_arrays(
                    model, cfg.transfer_dtype, exclude=local.keys
                ),
                RecordKey.METRICS: train_metrics(result),
                RecordKey.SITE: site_record(site.name),
            }
        )
        if spent is not None:
            content[RecordKey.PRIVACY] = privacy_record(spent)
        return audited(Message(content=content, reply_to=msg), context)

    @app.evaluate()
    def evaluate_handler(msg: Message, context: Context) -> Message:
        cfg = resolve(context)
        site, _, model, _ = _request(msg, context, cfg)
        counts = site.evaluate(model, cfg.eval_split)
        if cfg.secure_aggregation:
            return secure_evaluate_reply(secure, msg, context, site, counts)
        content = RecordDict(
            {
                RecordKey.METRICS: counts_to_metrics(counts),
                RecordKey.SITE: site_record(site.name),
            }
        )
        if (
            cfg.export_round == "best"
            and cfg.eval_split != "val"
            and len(site.data.val)
        ):
            val = counts_to_metrics(site.evaluate(model, "val"))
            content[RecordKey.VAL_METRICS] = val  # to choose the round on
        return audited(Message(content=content, reply_to=msg), context)

    @app.train(PERSONALIZE_ACTION)
    def personalize_handler(msg: Message, context: Context) -> Message:
        """Fine-tune the final global model here; report both on the same images.

        The fine-tuned weights stay at the hospital.
        """
        cfg = resolve(context)
        site, _, model, local = _request(msg, context, cfg)
        before = site.evaluate(model, cfg.eval_split)
        site.personalize(model)
        after = site.evaluate(model, cfg.eval_split)
        local.save_personalized(model)
        content = RecordDict(
            {
                RecordKey.METRICS: counts_to_metrics(before),
                RecordKey.PERSONALIZED: counts_to_metrics(after),
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
