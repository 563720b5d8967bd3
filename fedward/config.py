"""The one place that defines configuration keys, their defaults and their checks.

Three configurations, each a frozen pydantic model:

- :class:`FedwardConfig`: one federation run (model, rounds, training, data split);
  the server's run config, mirrored by ``[tool.flwr.app.config]`` in pyproject;
- :class:`SiteConfig`: what one hospital decides for itself (``site.toml``);
- :class:`ServerConfig`: the aggregation server's own settings (``server.toml``).

Keys are kebab-case in TOML files and Flower run configs (``local-epochs``) and
snake_case on the models (``local_epochs``). :meth:`Checked.from_mapping` reads
keys and reports every problem at once, as one :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import json
import logging
import tomllib
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from fedward.errors import ConfigError

logger = logging.getLogger(__name__)

ConfigValue = bool | int | float | str


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _between(lo: float | None = None, hi: float | None = None) -> Any:
    """A field's allowed range, inclusive."""
    return Field(ge=lo, le=hi)


class Checked(BaseModel):
    """Construction shared by the configurations: kebab-case keys, all checks at once.

    Types are strict (``1`` is not a bool, ``"32"`` not an int; an int is a
    float), unknown keys are refused with a "did you mean" hint, ranges and
    choices are declared on the fields, and :meth:`_cross_problems` checks
    fields against each other.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        alias_generator=_kebab,
        validate_by_name=True,
        validate_by_alias=True,
    )
    scope: ClassVar[str] = "config"

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any],
        *,
        base: Self | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Self:
        """Build from kebab-case keys over ``base`` (or the defaults).

        Raises
        ------
        ConfigError
            Listing every unknown key, wrong type, out-of-range value and
            inconsistency at once.
        """
        merged = {**(base.to_mapping() if base is not None else {}), **values}
        problems: list[str] = []
        try:
            config = cls.model_validate(merged)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            problems = [cls._describe(e, merged) for e in exc.errors()]
            # check what is left, so that cross-field problems show up too
            try:
                config = cls.model_validate(
                    {k: v for k, v in merged.items() if k not in bad}
                )
            except ValidationError:  # a required key is missing or wrong
                raise ConfigError([f"{cls.scope}: {p}" for p in problems]) from None
        problems.extend(config._cross_problems(context or {}))
        if problems:
            raise ConfigError([f"{cls.scope}: {p}" for p in problems])
        config._warn_if_odd()
        return config

    @classmethod
    def from_toml(cls, path: Path, *, base: Self | None = None) -> Self:
        """Read a TOML file (flat kebab-case keys, tables flattened)."""
        return cls.from_mapping(read_toml(path), base=base)

    def to_mapping(self) -> dict[str, ConfigValue]:
        """Kebab-case mapping, as TOML files, run configs and run folders hold it."""
        return self.model_dump(by_alias=True)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (snake_case names), checked again."""
        return self.model_validate({**self.model_dump(), **changes})

    def _cross_problems(self, context: Mapping[str, Any]) -> list[str]:
        return []

    def _warn_if_odd(self) -> None:
        return None

    @classmethod
    def _describe(cls, error: ErrorDetails, values: Mapping[str, Any]) -> str:
        """One line for one pydantic error, in fedward's wording."""
        key = str(error["loc"][0]) if error["loc"] else "?"
        value = values.get(key, error.get("input"))
        if error["type"] == "extra_forbidden":
            keys = [_kebab(name) for name in cls.model_fields]
            hint = difflib.get_close_matches(key, keys, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            return f"unknown key '{key}'{extra}"
        field = cls.model_fields.get(key.replace("-", "_"))
        if field is None:
            return f"'{key}': {error['msg']}"
        if error["type"] == "missing":
            return f"'{key}' is required"
        if error["type"] == "literal_error":
            choices = ", ".join(str(c) for c in typing.get_args(field.annotation))
            return f"'{key}' must be one of {choices}; got {value!r}"
        if error["type"] in {"greater_than_equal", "less_than_equal"}:
            lo = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
            hi = next((m.le for m in field.metadata if hasattr(m, "le")), None)
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            return f"'{key}' = {value!r} is out of range {bounds}"
        expected = getattr(field.annotation, "__name__", str(field.annotation))
        return f"'{key}' must be {expected}, got {type(value).__name__} {value!r}"


# strategies whose aggregate is a weighted sum, which secure aggregation computes
SECURE_STRATEGIES = ("fedavg", "fedprox")

BestMetric = Literal[
    "accuracy", "recall", "specificity", "precision", "f1", "auroc", "loss"
]
# Flower 1.42 strategies by name (fedward.fl.strategies.registry)
StrategyName = Literal[
    "fedavg",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "fedavgm",
    "fedmedian",
    "fedtrimmedavg",
    "krum",
    "multikrum",
    "bulyan",
]
# the keys each strategy reads besides the common ones
STRATEGY_KEYS: dict[str, tuple[str, ...]] = {
    "fedprox": ("proximal-mu",),
    "fedavgm": ("server-learning-rate", "server-momentum"),
    "fedadam": ("fedopt-eta", "fedopt-beta-1", "fedopt-beta-2", "fedopt-tau"),
    "fedyogi": ("fedopt-eta", "fedopt-beta-1", "fedopt-beta-2", "fedopt-tau"),
    "fedadagrad": ("fedopt-eta", "fedopt-tau"),
    "fedtrimmedavg": ("trimmed-beta",),
    "krum": ("num-malicious-nodes",),
    "multikrum": ("num-malicious-nodes", "num-nodes-to-select"),
    "bulyan": ("num-malicious-nodes",),
}


class FedwardConfig(Checked):
    """Settings of one federation run, with the defaults in one place."""

    model: str = "seed-cnn-bn"
    class_names: str = "normal,opacity"
    image_size: Annotated[int, _between(16, 1024)] = 150
    in_channels: Annotated[int, _between(1, 3)] = 3
    num_server_rounds: Annotated[int, _between(1, 10_000)] = 5
    local_epochs: Annotated[int, _between(1, 1_000)] = 2
    batch_size: Annotated[int, _between(1, 4096)] = 32
    learning_rate: Annotated[float, _between(1e-8, 1.0)] = 0.0003
    fraction_train: Annotated[float, _between(0.0, 1.0)] = 1.0
    fraction_evaluate: Annotated[float, _between(0.0, 1.0)] = 1.0
    min_train_nodes: Annotated[int, _between(1)] = 2
    min_evaluate_nodes: Annotated[int, _between(1)] = 2
    min_available_nodes: Annotated[int, _between(1)] = 2
    seed: Annotated[int, _between(0, 2**31 - 1)] = 42
    val_fraction: Annotated[float, _between(0.0, 0.5)] = 0.15
    test_fraction: Annotated[float, _between(0.0, 0.5)] = 0.2
    eval_split: Literal["val", "test"] = "test"
    augment: bool = True
    shear: Annotated[float, _between(0.0, 1.0)] = 0.2
    zoom: Annotated[float, _between(0.0, 0.9)] = 0.2
    horizontal_flip: bool = True
    num_workers: Annotated[int, _between(0, 64)] = 0
    channels_last: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data_root: str = ""  # empty: the built-in synthetic demo (fedward simulate)
    partition: Literal["by-folder", "iid", "dirichlet", "quantity"] = "by-folder"
    num_hospitals: Annotated[int, _between(1, 1_000)] = 3
    dirichlet_alpha: Annotated[float, _between(1e-3, 1e3)] = 0.5
    server_test_data: str = ""
    # seconds a round waits for hospitals' replies; a hospital that drops out is
    # left out of that round once the others (at least the minimum) have answered
    round_timeout: Annotated[float, _between(1.0)] = 3600.0
    best_metric: BestMetric = "f1"
    run_dir: str = "runs/flwr-run"
    # differential privacy the run asks for (fedward.learning.privacy); each
    # hospital's site.toml may ask for more, and the stricter setting applies.
    # 0 leaves a value unset; dp-target-epsilon is per run, per hospital
    dp: bool = False
    dp_target_epsilon: Annotated[float, _between(0.0, 1e4)] = 0.0
    dp_noise_multiplier: Annotated[float, _between(0.0, 1e3)] = 0.0
    dp_max_grad_norm: Annotated[float, _between(1e-6, 1e6)] = 1.0
    dp_delta: Annotated[float, _between(0.0, 0.1)] = 0.0  # 0: 1/(10 x units)
    # simulated hospitals' own site settings (privacy keys only), as JSON
    # {"*": {...}, "hospital-2": {...}}: a scenario's [site] and [sites.<name>]
    # tables, or --set site.<key>= / sites.<name>.<key>=; deployed hospitals
    # ignore it (their settings come from their own site.toml)
    simulated_sites: str = ""

    @classmethod
    def from_toml(cls, path: Path, *, base: Self | None = None) -> Self:
        """Read a scenario file (see :func:`read_run_toml`)."""
        return cls.from_mapping(read_run_toml(path), base=base)

    # secure aggregation (docs/privacy.md): the server learns only sums. Each
    # hospital clips its update to secure-norm-bound (L2), each value to
    # +-secure-clip-range (the fixed-point range), and weighs it by at most
    # secure-max-examples images; secure-threshold hospitals (0: more than half of
    # those sampled) must take part in every step or the round is abandoned
    secure_aggregation: bool = False
    secure_threshold: Annotated[int, _between(0, 10_000)] = 0
    secure_norm_bound: Annotated[float, _between(1e-6)] = 10.0
    secure_clip_range: Annotated[float, _between(1e-6, 1e3)] = 0.1
    secure_max_examples: Annotated[int, _between(1, 2**24)] = 16384
    # --- hospitals that differ (docs/heterogeneity.md) ---------------------------
    strategy: StrategyName = "fedavg"
    proximal_mu: Annotated[float, _between(0.0, 1000.0)] = 0.0
    server_learning_rate: Annotated[float, _between(1e-6, 10.0)] = 1.0
    server_momentum: Annotated[float, _between(0.0, 0.999)] = 0.0
    fedopt_eta: Annotated[float, _between(1e-8, 10.0)] = 0.01
    fedopt_beta_1: Annotated[float, _between(0.0, 0.999)] = 0.9
    fedopt_beta_2: Annotated[float, _between(0.0, 0.9999)] = 0.99
    fedopt_tau: Annotated[float, _between(1e-9, 1.0)] = 0.001
    trimmed_beta: Annotated[float, _between(0.0, 0.49)] = 0.2
    num_malicious_nodes: Annotated[int, _between(0, 1000)] = 1
    num_nodes_to_select: Annotated[int, _between(1, 1000)] = 2
    # reject an update whose norm exceeds this multiple of the round's median
    # update norm (0: off), or whose cosine with the coordinate-wise median
    # update is below update-min-cosine (-1: off; label skew looks the same)
    update_norm_bound: Annotated[float, _between(0.0, 1e6)] = 10.0
    update_min_cosine: Annotated[float, _between(-1.0, 1.0)] = -1.0
    local_norm: bool = False  # FedBN: normalisation layers stay at each hospital
    personalize_epochs: Annotated[int, _between(0, 1000)] = 0
    harmonize: Literal["none", "histogram"] = "histogram"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    export_round: Literal["best", "last"] = "best"
    # weights on the wire: float16/bfloat16 halve the bytes of every round
    transfer_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    # continue from the run folder's latest signed resume point (--resume)
    resume: bool = False

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> FedwardConfig:
        """Build a config from a Flower run config (``context.run_config``)."""
        return cls.from_mapping(run_config)

    def to_run_config(self) -> dict[str, ConfigValue]:
        """Kebab-case mapping, as Flower run configs and run folders store it."""
        return self.to_mapping()

    @property
    def classes(self) -> list[str]:
        """Class names, in label order."""
        return [c.strip() for c in self.class_names.split(",") if c.strip()]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def _cross_problems(self, context: Mapping[str, Any]) -> list[str]:
        problems = []
        classes = self.classes
        if len(classes) < 2:
            problems.append("'class-names' needs at least two comma-separated names")
        if len(set(classes)) != len(classes):
            problems.append("'class-names' has a name twice")
        if self.val_fraction + self.test_fraction >= 0.9:
            problems.append("'val-fraction' + 'test-fraction' must be below 0.9")
        if self.eval_split == "test" and self.test_fraction == 0.0:
            problems.append("'eval-split' is 'test' but 'test-fraction' is 0")
        if self.dp and not (self.dp_target_epsilon or self.dp_noise_multiplier):
            problems.append(
                "'dp' needs 'dp-target-epsilon' or 'dp-noise-multiplier' above 0"
            )
        problems.extend(_simulated_site_problems(self.simulated_sites))
        if self.secure_aggregation:
            problems.extend(self._secure_problems())
        problems.extend(_heterogeneity_problems(self))
        return problems

    def _secure_problems(self) -> list[str]:
        """What secure aggregation cannot run with."""
        problems = []
        # robust strategies (median, Krum, ...) need each hospital's update, which
        # the server never sees under secure aggregation
        strategy = self.strategy
        if strategy not in SECURE_STRATEGIES:
            problems.append(
                f"'strategy' = {strategy!r} needs each hospital's update and cannot "
                f"run with 'secure-aggregation' (only {', '.join(SECURE_STRATEGIES)})"
            )
        for key in ("min_train_nodes", "min_evaluate_nodes"):
            if getattr(self, key) < 2:
                problems.append(
                    f"'secure-aggregation' needs '{_kebab(key)}' >= 2 "
                    "(a sum of one hospital is that hospital's input)"
                )
        if self.transfer_dtype != "float32":
            problems.append(
                "'transfer-dtype' applies to plain runs; 'secure-aggregation' sends "
                "fixed-point masked sums (leave it at 'float32')"
            )
        if self.personalize_epochs:
            problems.append(
                "'personalize-epochs' reports each hospital's figures to the server "
                "and cannot run with 'secure-aggregation'"
            )
        if self.secure_threshold == 1:
            problems.append("'secure-threshold' must be 0 (more than half) or >= 2")
        if self.secure_clip_range * self.secure_max_examples >= 2**30:
            problems.append(
                "'secure-clip-range' x 'secure-max-examples' must be below 2**30 "
                "(the fixed-point sum must fit 32 bits)"
            )
        return problems

    @property
    def norm_stays_local(self) -> bool:
        """Whether normalisation layers stay at each hospital (never sent).

        With ``local-norm``; and under secure aggregation for a model with
        BatchNorm, whose running statistics move far more per round than the
        fixed-point range (``secure-clip-range``) would carry.
        """
        batch_norm = self.model in NORM_MODELS and not self.dp  # DP: GroupNorm
        return self.local_norm or (self.secure_aggregation and batch_norm)

    def simulated_site(self, name: str) -> dict[str, Any]:
        """The site settings of simulated hospital ``name`` (``*``, then its own)."""
        sites = json.loads(self.simulated_sites) if self.simulated_sites else {}
        return {**sites.get("*", {}), **sites.get(name, {})}

    def _warn_if_odd(self) -> None:
        if not self.dp and (self.dp_target_epsilon or self.dp_noise_multiplier):
            logger.warning("dp-target-epsilon or dp-noise-multiplier set, dp off")
        if self.learning_rate > 0.1:
            logger.warning("learning-rate %.3g is unusually high", self.learning_rate)
        if self.batch_size > 512:
            logger.warning("batch-size %d is unusually large", self.batch_size)
        _warn_heterogeneity(self)


LabelKey = Literal[
    "auto", "sop-instance-uid", "series-instance-uid", "study-instance-uid", "path"
]
_SITE_PATHS = (
    "data_path",
    "labels_csv",
    "cache_dir",
    "dicomweb_password_file",
    "root_certificates",
    "node_key",
    "approved_apps",
    "daemon_dir",
    "models_dir",
    "privacy_ledger",
    "node_certificate",
    "figures_dir",
)
# the keys a simulated hospital may take from the run's simulated-sites
SIMULATED_SITE_KEYS = (
    "dp",
    "dp-target-epsilon",
    "dp-noise-multiplier",
    "dp-max-grad-norm",
    "dp-delta",
    "dp-accountant",
    "privacy-unit",
    "privacy-budget",
)


class SiteConfig(Checked):
    """What one hospital decides for itself; none of it comes from the server.

    Read from the hospital's own ``site.toml`` (or, for simulated hospitals,
    derived from their folder). Relative paths are relative to that file.
    """

    scope: ClassVar[str] = "site config"

    site_name: str = ""
    source: str = "folders"  # a registered source (fedward.data.sources)
    data_path: str = ""
    labels_csv: str = ""
    label_key: LabelKey = "auto"
    select: str = ""  # DICOM header filters: "Modality=CR|DX; ViewPosition=PA"
    frame: Annotated[int, _between(-1)] = -1
    window_center: float = 0.0
    window_width: Annotated[float, _between(0.0)] = 0.0
    cache_dir: str = ""  # empty: <data-path>/.fedward
    max_unusable_fraction: Annotated[float, _between(0.0, 1.0)] = 0.5
    dicomweb_url: str = ""
    dicomweb_query: str = ""  # QIDO-RS filters: "Modality=CR&BodyPartExamined=CHEST"
    dicomweb_user: str = ""
    dicomweb_password_file: str = ""
    dicomweb_retries: Annotated[int, _between(0, 20)] = 3
    dicomweb_timeout: Annotated[float, _between(0.1, 3600.0)] = 30.0
    # the hospital daemon (fedward hospital): where the server is, how to trust it
    superlink: str = ""  # host:port of the aggregation server
    root_certificates: str = ""  # the consortium's ca.crt
    node_key: str = ""  # this hospital's node.key (registered with the server)
    insecure: bool = False  # plain text: for tests on one machine only
    api_port: Annotated[int, _between(1, 65535)] = 9094
    # restarts have one owner, the daemon: when the SuperNode process exits it is
    # started again with back-off, at most max-restarts times (0: no limit);
    # connect-retries bounds the reconnection attempts inside one SuperNode
    # process (Flower's --max-retries; 0: Flower's default, no limit)
    max_restarts: Annotated[int, _between(0)] = 0
    connect_retries: Annotated[int, _between(0)] = 0
    # approved code: the app hashes this hospital runs (fedward hospital approve);
    # empty: <site-name>-approved-apps.json and <site-name>-daemon beside site.toml
    approved_apps: str = ""
    daemon_dir: str = ""  # the daemon's own files: gate, unpacked approved app
    # each run's signed final model, kept after its signature is checked against
    # root-certificates; empty: <site-name>-models beside site.toml
    models_dir: str = ""
    # differential privacy this hospital enforces (fedward.learning.privacy):
    # dp = true refuses any run that is not private; the stricter of these and
    # the run's request applies; 0 leaves a value unset
    dp: bool = False
    dp_target_epsilon: Annotated[float, _between(0.0, 1e4)] = 0.0  # per run
    dp_noise_multiplier: Annotated[float, _between(0.0, 1e3)] = 0.0
    dp_max_grad_norm: Annotated[float, _between(0.0, 1e6)] = 0.0
    dp_delta: Annotated[float, _between(0.0, 0.1)] = 0.0  # 0: 1/(10 x units)
    dp_accountant: Literal["rdp", "prv"] = "rdp"
    # who epsilon protects: a patient (needs DICOM PatientID on every training
    # image), an image, or auto (patient where every image names one)
    privacy_unit: Literal["auto", "patient", "image"] = "auto"
    privacy_budget: Annotated[float, _between(0.0, 1e4)] = 0.0  # lifetime; 0: none
    # the append-only privacy ledger; empty: <site-name>-privacy-ledger.jsonl
    # beside site.toml (a site without site.toml: <state folder>/privacy-ledger.jsonl)
    privacy_ledger: str = ""
    # secure aggregation: refuse every run without it; the CA's certificate for
    # node-key (empty: node.crt beside it); where this hospital keeps its own
    # figures of secure runs (empty: <site-name>-figures beside site.toml)
    require_secure_aggregation: bool = False
    node_certificate: str = ""
    figures_dir: str = ""

    @classmethod
    def from_site_file(
        cls, path: Path, *, sources: Collection[str] | None = None
    ) -> SiteConfig:
        """Read ``site.toml``; relative paths are taken from its folder.

        ``sources``, when given, are the registered source names ``source``
        must be one of (:func:`fedward.data.load.read_site` passes them).
        """
        config = cls.from_mapping(read_toml(path), context={"sources": sources})
        config = config.model_copy(
            update={
                "approved_apps": config.approved_apps
                or f"{config.name}-approved-apps.json",
                "daemon_dir": config.daemon_dir or f"{config.name}-daemon",
                "models_dir": config.models_dir or f"{config.name}-models",
                "privacy_ledger": config.privacy_ledger
                or f"{config.name}-privacy-ledger.jsonl",
                "figures_dir": config.figures_dir or f"{config.name}-figures",
                "node_certificate": config.node_certificate
                or (
                    str(Path(config.node_key).with_name("node.crt"))
                    if config.node_key
                    else ""
                ),
            }
        )
        updates: dict[str, Any] = {
            name: str((path.parent / getattr(config, name)).resolve())
            for name in _SITE_PATHS
            if getattr(config, name) and not Path(getattr(config, name)).is_absolute()
        }
        return config.model_copy(update=updates)

    @property
    def name(self) -> str:
        """The site's name: configured, else its data folder's name."""
        return self.site_name or Path(self.data_path).name or "site"

    @property
    def state_dir(self) -> Path | None:
        """Where caches and the quarantine report go (``None``: nowhere)."""
        if self.cache_dir:
            return Path(self.cache_dir)
        if self.source == "dicomweb":
            return Path(".fedward") / self.name
        data = Path(self.data_path)
        return data / ".fedward" if self.data_path and data.is_dir() else None

    def _cross_problems(self, context: Mapping[str, Any]) -> list[str]:
        problems = []
        sources = context.get("sources")
        if sources is not None and self.source not in sources:
            known = ", ".join(sorted(sources))
            problems.append(f"'source' must be one of {known}; got {self.source!r}")
        if self.source == "dicomweb":
            if not self.dicomweb_url:
                problems.append("source 'dicomweb' needs 'dicomweb-url'")
            if not self.labels_csv:
                problems.append("source 'dicomweb' needs 'labels-csv'")
        elif not self.data_path:
            problems.append(f"source '{self.source}' needs 'data-path'")
        if self.source == "npz" and not self.data_path.endswith(".npz"):
            problems.append("source 'npz' needs a 'data-path' ending in .npz")
        if self.dicomweb_user and not self.dicomweb_password_file:
            problems.append("'dicomweb-user' needs 'dicomweb-password-file'")
        return problems

    @property
    def ledger_path(self) -> Path | None:
        """Where this hospital's privacy ledger is (``None``: nowhere to keep one)."""
        if self.privacy_ledger:
            return Path(self.privacy_ledger)
        state = self.state_dir
        return state / "privacy-ledger.jsonl" if state is not None else None


class ServerConfig(Checked):
    """The aggregation server's own settings (``fedward server``).

    The federation itself (model, rounds, ...) is a :class:`FedwardConfig` in the
    ``[federation]`` table of the same file.
    """

    scope: ClassVar[str] = "server config"

    address: str = "0.0.0.0:9092"
    certs_dir: str = "certs"
    authorized_keys: str = ""  # folder of node.pub files; default <certs>/hospitals
    insecure: bool = False
    state_dir: str = "server-state"

    @classmethod
    def from_server_file(cls, path: Path) -> tuple[ServerConfig, FedwardConfig]:
        """Read ``server.toml``: server keys at the top, ``[federation]`` below.

        Relative paths are taken from the file's folder.

        Raises
        ------
        ConfigError
            Listing the problems of both parts at once.
        """
        raw = read_toml_tables(path)
        federation = _flatten(raw.pop("federation", {}))
        problems: list[str] = []
        server = run = None
        try:
            server = cls.from_mapping(_flatten(raw))
        except ConfigError as exc:
            problems.extend(exc.problems)
        try:
            run = FedwardConfig.from_mapping(federation)
        except ConfigError as exc:
            problems.extend(exc.problems)
        if problems or server is None or run is None:
            raise ConfigError(problems)
        updates: dict[str, Any] = {
            name: str((path.parent / getattr(server, name)).resolve())
            for name in ("certs_dir", "authorized_keys", "state_dir")
            if getattr(server, name) and not Path(getattr(server, name)).is_absolute()
        }
        return server.model_copy(update=updates), run


def read_toml_tables(path: Path) -> dict[str, Any]:
    """A TOML file's tables as they are (not flattened).

    Raises
    ------
    ConfigError
        If the file is missing or is not valid TOML.
    """
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None


def read_run_toml(path: Path) -> dict[str, Any]:
    """A scenario file's run keys, its site tables as ``simulated-sites``.

    ``[site]`` holds site settings for every simulated hospital and
    ``[sites.<name>]`` for one; ``[[attack]]`` tables are not run keys (they
    describe misbehaving hospitals for ``fedward simulate`` alone:
    :class:`AttackConfig`, :func:`fedward.simulation.attacks.read_attacks`);
    every other table is flattened.

    Raises
    ------
    ConfigError
        If the file is missing or is not valid TOML.
    """
    tables = read_toml_tables(path)
    every, named = tables.pop("site", {}), tables.pop("sites", {})
    tables.pop("attack", None)
    values = _flatten(tables)
    if every or named:
        values["simulated-sites"] = json.dumps({"*": every, **named})
    return values


def with_site_settings(
    values: Mapping[str, Any], settings: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """``values`` with ``settings`` (hospital or ``*`` -> keys) merged in."""
    current = values.get("simulated-sites") or "{}"
    try:
        sites: dict[str, dict[str, Any]] = json.loads(current)
    except (TypeError, ValueError):
        return dict(values)  # from_mapping reports the bad JSON
    for name, keys in settings.items():
        sites[name] = {**sites.get(name, {}), **keys}
    return {**values, "simulated-sites": json.dumps(sites)}


def _simulated_site_problems(text: str) -> list[str]:
    if not text:
        return []
    try:
        sites = json.loads(text)
    except ValueError:
        return ["'simulated-sites' is not JSON"]
    if not isinstance(sites, dict) or not all(
        isinstance(v, dict) for v in sites.values()
    ):
        return ["'simulated-sites' must map hospital names to tables of keys"]
    problems = []
    for name, keys in sites.items():
        where = "every simulated site" if name == "*" else f"site {name!r}"
        for key in sorted(set(keys) - set(SIMULATED_SITE_KEYS)):
            problems.append(
                f"{where}: '{key}' is not a setting a simulated site takes "
                f"(one of {', '.join(SIMULATED_SITE_KEYS)})"
            )
        try:
            SiteConfig.from_mapping(
                {k: v for k, v in keys.items() if k in SIMULATED_SITE_KEYS}
                | {"data-path": "."}
            )
        except ConfigError as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
    return problems


def read_toml(path: Path) -> dict[str, Any]:
    """The keys of a TOML file, tables flattened, not yet checked.

    Raises
    ------
    ConfigError
        If the file is missing or is not valid TOML.
    """
    return _flatten(read_toml_tables(path))


def _flatten(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten TOML tables: ``[training] local-epochs`` becomes ``local-epochs``."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat


# --- hospitals that differ: strategy keys, attacks (docs/heterogeneity.md) ----------


def _heterogeneity_problems(config: FedwardConfig) -> list[str]:
    problems = []
    if config.transfer_dtype != "float32" and config.strategy not in STREAMED:
        # the others aggregate the 16-bit arrays as they arrive (and NumPy has no
        # bfloat16); FedAvg's running mean widens each update to float32 first
        problems.append(
            f"'transfer-dtype' = {config.transfer_dtype!r} needs a strategy that "
            f"averages ({', '.join(STREAMED)}); got {config.strategy!r}"
        )
    if config.strategy == "multikrum" and (
        config.num_nodes_to_select > config.min_train_nodes
    ):
        problems.append(
            "'num-nodes-to-select' must not exceed 'min-train-nodes' "
            f"({config.num_nodes_to_select} > {config.min_train_nodes})"
        )
    if config.local_norm and config.model not in NORM_MODELS:
        problems.append(
            f"'local-norm' needs a model with normalisation layers "
            f"({', '.join(NORM_MODELS)}); got {config.model!r}"
        )
    return problems


# strategies whose aggregate is FedAvg's mean, folded one reply at a time
STREAMED = ("fedavg", "fedprox")

# models with normalisation layers that 'local-norm' can keep at each hospital
NORM_MODELS = ("seed-cnn-bn", "resnet18", "densenet121")


def _warn_heterogeneity(config: FedwardConfig) -> None:
    defaults = FedwardConfig()
    used = STRATEGY_KEYS.get(config.strategy, ())
    for keys in STRATEGY_KEYS.values():
        for key in keys:
            name = key.replace("-", "_")
            if key not in used and getattr(config, name) != getattr(defaults, name):
                logger.warning(
                    "'%s' has no effect with strategy '%s'", key, config.strategy
                )
    robust = config.strategy in {"krum", "multikrum", "bulyan"}
    f = config.num_malicious_nodes
    if config.strategy == "bulyan" and config.min_train_nodes < 4 * f + 3:
        logger.warning(
            "bulyan with num-malicious-nodes=%d needs at least %d hospitals a "
            "round (min-train-nodes is %d); a round with fewer is skipped",
            f,
            4 * f + 3,
            config.min_train_nodes,
        )
    elif robust and config.min_train_nodes < 2 * f + 3:
        logger.warning(
            "%s assumes more than 2 x num-malicious-nodes + 2 hospitals a round "
            "(min-train-nodes is %d)",
            config.strategy,
            config.min_train_nodes,
        )
    if config.export_round == "best" and config.val_fraction == 0.0:
        logger.warning(
            "export-round 'best' picks the round on validation images, and "
            "val-fraction is 0: it is picked on the %s images (optimistic)",
            config.eval_split,
        )


AttackKind = Literal["sign-flip", "scale", "gaussian-noise", "nan", "label-flip"]


class AttackConfig(Checked):
    """One ``[[attack]]`` table of a simulation scenario: a misbehaving hospital.

    Only ``fedward simulate`` reads these (:mod:`fedward.simulation.attacks`);
    a deployed hospital never does.
    """

    scope: ClassVar[str] = "attack"

    site: str  # the hospital's name, as the run reports it (hospital-2)
    kind: AttackKind
    # sign-flip, scale: the update times -factor, factor; gaussian-noise: noise
    # of factor x the update's RMS; label-flip: the share of labels flipped
    factor: Annotated[float, _between(0.0, 1e6)] = 1.0

    @classmethod
    def from_tables(cls, tables: Any) -> list[AttackConfig]:
        """Every ``[[attack]]`` table, all problems reported at once.

        Raises
        ------
        ConfigError
            If ``tables`` is not a list of tables or a table is wrong.
        """
        if not isinstance(tables, list) or not all(
            isinstance(t, Mapping) for t in tables
        ):
            raise ConfigError("attack: '[[attack]]' must be an array of tables")
        attacks: list[AttackConfig] = []
        problems: list[str] = []
        for number, table in enumerate(tables, 1):
            try:
                attacks.append(cls.from_mapping(table))
            except ConfigError as exc:
                problems.extend(f"{p} (attack {number})" for p in exc.problems)
        if problems:
            raise ConfigError(problems)
        return attacks
