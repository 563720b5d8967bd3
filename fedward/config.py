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
            config = cls.model_validate(
                {k: v for k, v in merged.items() if k not in bad}
            )
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


BestMetric = Literal[
    "accuracy", "recall", "specificity", "precision", "f1", "auroc", "loss"
]


class FedwardConfig(Checked):
    """Settings of one federation run, with the defaults in one place."""

    model: str = "seed-cnn"
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
    partition: Literal["by-folder", "iid", "dirichlet"] = "by-folder"
    num_hospitals: Annotated[int, _between(1, 1_000)] = 3
    dirichlet_alpha: Annotated[float, _between(1e-3, 1e3)] = 0.5
    server_test_data: str = ""
    # seconds a round waits for hospitals' replies; a hospital that drops out is
    # left out of that round once the others (at least the minimum) have answered
    round_timeout: Annotated[float, _between(1.0)] = 3600.0
    best_metric: BestMetric = "f1"
    run_dir: str = "runs/flwr-run"
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
        return problems

    def _warn_if_odd(self) -> None:
        if self.learning_rate > 0.1:
            logger.warning("learning-rate %.3g is unusually high", self.learning_rate)
        if self.batch_size > 512:
            logger.warning("batch-size %d is unusually large", self.batch_size)


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
