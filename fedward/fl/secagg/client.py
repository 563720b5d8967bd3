"""The hospital's secure-mode handlers: Flower messages to :mod:`.party` steps.

:func:`register_secure_handlers` adds the four query steps to the ClientApp;
:func:`secure_train_reply` and :func:`secure_evaluate_reply` replace the plain
train and evaluate replies when the run has ``secure-aggregation = true``; and
:func:`require_secure_mod` makes a hospital whose ``site.toml`` says
``require-secure-aggregation = true`` refuse every message of a run without it.

Per-hospital figures never leave the hospital in secure mode: each step's own
figures go to the hospital's log and to a local file (``figures-dir`` in
``site.toml``; for a simulated hospital, its folder under the run's
``sites/``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod
from torch import nn

from fedward.config import FedwardConfig, SiteConfig
from fedward.errors import SecureAggregationError
from fedward.fl.protocol import RecordKey, site_record
from fedward.fl.secagg import party
from fedward.fl.secagg.identity import Identity, PeerTrust, RunLocalCA
from fedward.fl.secagg.inputs import evaluate_input, train_input
from fedward.fl.secagg.party import PartyState, Session
from fedward.fl.secagg.records import (
    MASKED,
    SECAGG,
    STATE,
    Stage,
    bundle_reply,
    masked_record,
    read_collect,
    read_share,
    read_u3,
    read_unmask,
    revealed_reply,
    secagg_record,
    session_of,
    shares_reply,
    signature_reply,
)
from fedward.learning.loops import TrainResult
from fedward.learning.site import Site
from fedward.metrics.counts import EvalCounts
from fedward.runfolder import RunFolder, json_safe

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hooks:
    """What the ClientApp tells the secure handlers about this hospital."""

    config: Callable[[Context], FedwardConfig]
    site_config: Callable[[dict[str, Any]], SiteConfig | None]
    site: Callable[[Context, FedwardConfig], Site]
    audit: Callable[[Message, Context], Message]

    def own_site(self, context: Context) -> SiteConfig | None:
        """The hospital's ``site.toml`` (``None`` when simulated)."""
        return self.site_config(dict(context.node_config))


def require_secure_mod(hooks: Hooks) -> Mod:
    """A mod refusing every message of a run without secure aggregation, if asked."""

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        site = hooks.own_site(context)
        required = site is not None and site.require_secure_aggregation
        if (
            site is not None
            and required
            and not hooks.config(context).secure_aggregation
        ):
            reason = (
                f"hospital {site.name} requires secure aggregation "
                "(require-secure-aggregation in its site config); this run "
                "has secure-aggregation = false"
            )
            logger.error("%s", reason)
            raise SecureAggregationError(reason)
        return call_next(msg, context)

    return mod


# --- context.state --------------------------------------------------------------------


def _load(context: Context, session: Session) -> PartyState:
    record = context.state.get(STATE)
    if not isinstance(record, ConfigRecord) or session.kind not in record:
        raise SecureAggregationError("no secure sum in progress at this hospital")
    state = PartyState.from_bytes(bytes(record[session.kind]))  # type: ignore[arg-type]
    if state.session != session:
        raise SecureAggregationError("the request names another secure sum")
    return state


def _save(context: Context, state: PartyState) -> None:
    record = context.state.get(STATE)
    record = record if isinstance(record, ConfigRecord) else ConfigRecord()
    record[state.session.kind] = state.to_bytes()
    context.state[STATE] = record


def _forget(context: Context, kind: str) -> None:
    record = context.state.get(STATE)
    if isinstance(record, ConfigRecord) and kind in record:
        del record[kind]


# --- who this hospital is -------------------------------------------------------------


def identity_and_trust(
    hooks: Hooks, context: Context, config: FedwardConfig
) -> tuple[Identity, PeerTrust]:
    """The hospital's certified key and the CA it checks its peers against.

    Raises
    ------
    SecureAggregationError
        If a deployed hospital's site config lacks the node key, its certificate
        or the CA.
    """
    site = hooks.own_site(context)
    if site is None:
        name = hooks.site(context, config).name
        ca = RunLocalCA(RunFolder(config.run_dir).path / RunFolder.SITES)
        return ca.identity(name), ca.trust()
    paths = (site.node_key, site.node_certificate, site.root_certificates)
    if not all(paths):
        raise SecureAggregationError(
            f"{site.name}: secure aggregation needs 'node-key', its "
            "'node-certificate' and 'root-certificates' in the site config"
        )
    try:
        identity = Identity.from_files(Path(site.node_key), Path(site.node_certificate))
        return identity, PeerTrust.from_ca_file(Path(site.root_certificates))
    except SecureAggregationError as exc:  # the detail names paths: it stays here
        logger.error("%s: %s (node-certificate %s; `fedward certs node-certificate "
                     "%s` issues one)", site.name, exc, site.node_certificate,
                     site.name)  # fmt: skip
        raise SecureAggregationError(
            f"{site.name} cannot use its node key, certificate or CA for secure "
            "aggregation; see the hospital's log"
        ) from None


def keep_local(
    hooks: Hooks, context: Context, name: str, row: Mapping[str, Any]
) -> None:
    """Log this hospital's own figures and append them to its local file."""
    site = hooks.own_site(context)
    if site is not None:
        path = Path(site.figures_dir) / f"run-{context.run_id}.jsonl"
    else:
        config = hooks.config(context)
        path = RunFolder(config.run_dir).site_dir(name) / RunFolder.SITE_FIGURES
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_safe({"site": name, **row})) + "\n")
    shown = "  ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in row.items()
        if v is not None and not isinstance(v, list | dict)
    )
    logger.info("%s (kept at this hospital, not sent): %s", name, shown)


# --- the steps ------------------------------------------------------------------------


def _reply(
    hooks: Hooks, msg: Message, context: Context, record: ConfigRecord, name: str
) -> Message:
    content = RecordDict({SECAGG: record, RecordKey.SITE: site_record(name)})
    return hooks.audit(Message(content=content, reply_to=msg), context)


def register_secure_handlers(app: ClientApp, hooks: Hooks) -> None:
    """Add the query steps of a secure sum to ``app``."""

    @app.query(Stage.ADVERTISE)
    def advertise(msg: Message, context: Context) -> Message:
        session = session_of(msg)
        identity, _ = identity_and_trust(hooks, context, hooks.config(context))
        me = msg.metadata.dst_node_id
        state, bundle = party.advertise(session, me, identity)
        _save(context, state)
        return _reply(hooks, msg, context, bundle_reply(bundle), identity.name)

    @app.query(Stage.SHARE)
    def share(msg: Message, context: Context) -> Message:
        def step(state: PartyState, trust: PeerTrust, _: Identity) -> ConfigRecord:
            return shares_reply(
                party.share(state, read_share(secagg_record(msg)), trust)
            )

        return _step(hooks, msg, context, step)

    @app.query(Stage.CONSISTENCY)
    def consistency(msg: Message, context: Context) -> Message:
        def step(state: PartyState, _: PeerTrust, identity: Identity) -> ConfigRecord:
            u3 = read_u3(secagg_record(msg))
            return signature_reply(party.consistency(state, u3, identity))

        return _step(hooks, msg, context, step)

    @app.query(Stage.UNMASK)
    def unmask(msg: Message, context: Context) -> Message:
        def step(
            state: PartyState, trust: PeerTrust, identity: Identity
        ) -> ConfigRecord:
            u3, signatures = read_unmask(secagg_record(msg))
            seeds, keys = party.unmask(state, u3, signatures, trust)
            logger.info(
                "%s: secure %s round %d: revealed %d seed and %d key share(s)",
                identity.name, state.session.kind, state.session.server_round,
                len(seeds), len(keys),
            )  # fmt: skip
            return revealed_reply(seeds, keys)

        return _step(hooks, msg, context, step, keep=False)


Step = Callable[[PartyState, PeerTrust, Identity], ConfigRecord]


def _step(
    hooks: Hooks, msg: Message, context: Context, step: Step, keep: bool = True
) -> Message:
    """One step after the first: load the state, run ``step``, keep or forget it."""
    session = session_of(msg)
    state = _load(context, session)
    identity, trust = identity_and_trust(hooks, context, hooks.config(context))
    record = step(state, trust, identity)
    if keep:
        _save(context, state)
    else:  # the last step: this sum's secrets are no longer kept
        _forget(context, session.kind)
    return _reply(hooks, msg, context, record, identity.name)


def _masked_reply(
    hooks: Hooks,
    msg: Message,
    context: Context,
    state: PartyState,
    vectors: dict[str, Any],
    name: str,
) -> Message:
    u2, sealed = read_collect(secagg_record(msg))
    party.receive(state, u2, sealed)
    masked = party.masked_input(state, vectors)
    _save(context, state)
    content = RecordDict(
        {MASKED: masked_record(masked), RecordKey.SITE: site_record(name)}
    )
    return hooks.audit(Message(content=content, reply_to=msg), context)


def secure_train_reply(
    hooks: Hooks,
    msg: Message,
    context: Context,
    site: Site,
    sent: ArrayRecord,
    model: nn.Module,
    result: TrainResult,
) -> Message:
    """The masked train reply: the clipped, weighted update and counts, masked."""
    session = session_of(msg)
    state = _load(context, session)
    received = {k: sent[k].numpy() for k in sent}
    # what was received is what is summed: with local-norm the hospital's own
    # normalisation layers were neither received nor are they sent
    trained = {
        k: v.detach().cpu().numpy()
        for k, v in model.state_dict().items()
        if k in received
    }
    vectors, figures = train_input(
        site.config, session.parties, received, trained, result
    )
    if figures["norm-clipped"] or figures["values-clipped"]:
        logger.warning(
            "%s: update clipped (norm %.3f, bound %.3f; %d value(s) beyond +-%g)",
            site.name, figures["update-norm"], site.config.secure_norm_bound,
            figures["values-clipped"], site.config.secure_clip_range,
        )  # fmt: skip
    if figures["weight"] < figures["num-examples"]:
        logger.warning(
            "%s: %d training images, weighted as %d (secure-max-examples)",
            site.name, figures["num-examples"], figures["weight"],
        )  # fmt: skip
    keep_local(
        hooks,
        context,
        site.name,
        {"round": session.server_round, "stage": "train", **figures},
    )
    return _masked_reply(hooks, msg, context, state, vectors, site.name)


def secure_evaluate_reply(
    hooks: Hooks, msg: Message, context: Context, site: Site, counts: EvalCounts
) -> Message:
    """The masked evaluate reply: the evaluation counts, masked."""
    session = session_of(msg)
    state = _load(context, session)
    figures = counts.figures(site.config.classes)
    keep_local(
        hooks,
        context,
        site.name,
        {
            "round": session.server_round,
            "stage": "evaluate",
            **figures,
            "num-examples": counts.num_examples,
            "counts": counts.to_json(),
        },
    )
    return _masked_reply(hooks, msg, context, state, evaluate_input(counts), site.name)
