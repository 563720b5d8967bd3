"""The one place that defines configuration keys, their defaults and their checks.

Keys are kebab-case in TOML files and Flower run configs (``local-epochs``) and
snake_case on :class:`FedwardConfig` (``local_epochs``).
:meth:`FedwardConfig.from_mapping` is the only code that reads keys; it reports
every problem at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from fedward.common.errors import ConfigError

logger = logging.getLogger(__name__)

ConfigValue = bool | int | float | str


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"range": (lo, hi)}


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


T = TypeVar("T", bound="CheckedConfig")


class CheckedConfig:
    """Construction shared by config dataclasses: kebab-case keys, all checks at once.

    Subclasses are frozen dataclasses; field metadata ``range`` and ``choices``
    bound values, and :meth:`_cross_problems` checks fields against each other.
    """

    @classmethod
    def from_mapping(
        cls: type[T], values: Mapping[str, Any], *, base: T | None = None
    ) -> T:
        """Build from kebab-case keys over ``base`` (or the defaults).

        Raises
        ------
        ConfigError
            Listing every unknown key, wrong type and out-of-range value at once.
        """
        base = base or cls()
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        by_key = {f.name.replace("_", "-"): f for f in fields}
        problems: list[str] = []
        updates: dict[str, Any] = {}
        for key, value in values.items():
            fld = by_key.get(key)
            if fld is None:
                hint = difflib.get_close_matches(key, list(by_key), n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                problems.append(f"unknown key '{key}'{extra}")
                continue
            checked, problem = _check_value(key, fld, value)
            if problem:
                problems.append(problem)
            else:
                updates[fld.name] = checked
        config = dataclasses.replace(base, **updates)  # type: ignore[type-var]
        problems.extend(config._cross_problems())
        if problems:
            raise ConfigError([f"{cls._scope}: {p}" for p in problems])
        config._warn_if_odd()
        return config

    @classmethod
    def from_toml(cls: type[T], path: Path, *, base: T | None = None) -> T:
        """Read a TOML file (flat kebab-case keys, tables flattened)."""
        return cls.from_mapping(read_toml(path), base=base)

    def to_mapping(self) -> dict[str, ConfigValue]:
        """Kebab-case mapping, as TOML files, run configs and run folders hold it."""
        return {
            f.name.replace("_", "-"): getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }

    _scope: ClassVar[str] = "config"

    def _cross_problems(self) -> list[str]:
        return []

    def _warn_if_odd(self) -> None:
        return None


@dataclass(frozen=True)
class FedwardConfig(CheckedConfig):
    """Settings of one federation run, with the defaults in one place."""

    model: str = "seed-cnn"
    class_names: str = "normal,opacity"
    image_size: int = field(default=150, metadata=_range(16, 1024))
    in_channels: int = field(default=3, metadata=_range(1, 3))
    num_server_rounds: int = field(default=5, metadata=_range(1, 10_000))
    local_epochs: int = field(default=2, metadata=_range(1, 1_000))
    batch_size: int = field(default=32, metadata=_range(1, 4096))
    learning_rate: float = field(default=0.0003, metadata=_range(1e-8, 1.0))
    fraction_train: float = field(default=1.0, metadata=_range(0.0, 1.0))
    fraction_evaluate: float = field(default=1.0, metadata=_range(0.0, 1.0))
    min_train_nodes: int = field(default=2, metadata=_range(1, None))
    min_evaluate_nodes: int = field(default=2, metadata=_range(1, None))
    min_available_nodes: int = field(default=2, metadata=_range(1, None))
    seed: int = field(default=42, metadata=_range(0, 2**31 - 1))
    val_fraction: float = field(default=0.15, metadata=_range(0.0, 0.5))
    test_fraction: float = field(default=0.2, metadata=_range(0.0, 0.5))
    eval_split: str = field(default="test", metadata=_choices("val", "test"))
    augment: bool = True
    shear: float = field(default=0.2, metadata=_range(0.0, 1.0))
    zoom: float = field(default=0.2, metadata=_range(0.0, 0.9))
    horizontal_flip: bool = True
    num_workers: int = field(default=0, metadata=_range(0, 64))
    channels_last: bool = True
    device: str = field(default="auto", metadata=_choices("auto", "cpu", "cuda"))
    data_root: str = ""  # empty: the built-in synthetic demo
    partition: str = field(
        default="by-folder", metadata=_choices("by-folder", "iid", "dirichlet")
    )
    num_hospitals: int = field(default=3, metadata=_range(1, 1_000))
    dirichlet_alpha: float = field(default=0.5, metadata=_range(1e-3, 1e3))
    server_test_data: str = ""
    # seconds a round waits for hospitals' replies; a hospital that drops out is
    # left out of that round once the others (at least the minimum) have answered
    round_timeout: float = field(default=3600.0, metadata=_range(1.0, None))
    best_metric: str = field(
        default="f1",
        metadata=_choices(
            "accuracy", "recall", "specificity", "precision", "f1", "auroc", "loss"
        ),
    )
    run_dir: str = "runs/flwr-run"

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

    def _cross_problems(self) -> list[str]:
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


LABEL_KEYS = (
    "auto",
    "sop-instance-uid",
    "series-instance-uid",
    "study-instance-uid",
    "path",
)
_SITE_PATHS = (
    "data_path",
    "labels_csv",
    "cache_dir",
    "dicomweb_password_file",
    "root_certificates",
    "node_key",
    "approved_apps",
    "daemon_dir",
)


@dataclass(frozen=True)
class SiteConfig(CheckedConfig):
    """What one hospital decides for itself; none of it comes from the server.

    Read from the hospital's own ``site.toml`` (or, for simulated hospitals,
    derived from their folder). Relative paths are relative to that file.
    """

    _scope: ClassVar[str] = "site config"

    site_name: str = ""
    source: str = "folders"  # a registered source (fedward.common.data.registry)
    data_path: str = ""
    labels_csv: str = ""
    label_key: str = field(default="auto", metadata=_choices(*LABEL_KEYS))
    select: str = ""  # DICOM header filters: "Modality=CR|DX; ViewPosition=PA"
    frame: int = field(default=-1, metadata=_range(-1, None))
    window_center: float = 0.0
    window_width: float = field(default=0.0, metadata=_range(0.0, None))
    cache_dir: str = ""  # empty: <data-path>/.fedward
    max_unusable_fraction: float = field(default=0.5, metadata=_range(0.0, 1.0))
    dicomweb_url: str = ""
    dicomweb_query: str = ""  # QIDO-RS filters: "Modality=CR&BodyPartExamined=CHEST"
    dicomweb_user: str = ""
    dicomweb_password_file: str = ""
    dicomweb_retries: int = field(default=3, metadata=_range(0, 20))
    dicomweb_timeout: float = field(default=30.0, metadata=_range(0.1, 3600.0))
    # the hospital daemon (fedward hospital): where the server is, how to trust it
    superlink: str = ""  # host:port of the aggregation server
    root_certificates: str = ""  # the consortium's ca.crt
    node_key: str = ""  # this hospital's node.key (registered with the server)
    insecure: bool = False  # plain text: for tests on one machine only
    api_port: int = field(default=9094, metadata=_range(1, 65535))
    max_restarts: int = field(default=0, metadata=_range(0, None))  # 0: no limit
    connect_retries: int = field(default=0, metadata=_range(0, None))  # 0: no limit
    # approved code: the app hashes this hospital runs (fedward hospital approve);
    # empty: <site-name>-approved-apps.json and <site-name>-daemon beside site.toml
    approved_apps: str = ""
    daemon_dir: str = ""  # the daemon's own files: gate, unpacked approved app

    @classmethod
    def from_site_file(cls, path: Path) -> SiteConfig:
        """Read ``site.toml``; relative paths are taken from its folder."""
        config = cls.from_toml(path)
        config = dataclasses.replace(
            config,
            approved_apps=config.approved_apps or f"{config.name}-approved-apps.json",
            daemon_dir=config.daemon_dir or f"{config.name}-daemon",
        )
        updates: dict[str, Any] = {
            name: str((path.parent / getattr(config, name)).resolve())
            for name in _SITE_PATHS
            if getattr(config, name) and not Path(getattr(config, name)).is_absolute()
        }
        return dataclasses.replace(config, **updates)

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

    def _cross_problems(self) -> list[str]:
        from fedward.common.data.registry import list_sources  # registry imports us

        problems = []
        if self.source not in list_sources():
            known = ", ".join(list_sources())
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


@dataclass(frozen=True)
class ServerConfig(CheckedConfig):
    """The aggregation server's own settings (``fedward server``).

    The federation itself (model, rounds, ...) is a :class:`FedwardConfig` in the
    ``[federation]`` table of the same file.
    """

    _scope: ClassVar[str] = "server config"

    address: str = "0.0.0.0:9092"
    certs_dir: str = "certs"
    authorized_keys: str = ""  # folder of node.pub files; default <certs>/hospitals
    insecure: bool = False
    state_dir: str = "server-state"

    @classmethod
    def from_server_file(cls, path: Path) -> tuple[ServerConfig, FedwardConfig]:
        """Read ``server.toml``: server keys at the top, ``[federation]`` below.

        Relative paths are taken from the file's folder.
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
        return dataclasses.replace(server, **updates), run


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


def _check_value(
    key: str, fld: dataclasses.Field[Any], value: Any
) -> tuple[Any, str | None]:
    """Return the coerced value, or a problem description."""
    expected = fld.type
    if expected == "bool":
        ok = isinstance(value, bool)
    elif expected == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        got = type(value).__name__
        return value, f"'{key}' must be {expected}, got {got} {value!r}"
    choices = fld.metadata.get("choices")
    if choices and value not in choices:
        return value, f"'{key}' must be one of {', '.join(choices)}; got {value!r}"
    lo, hi = fld.metadata.get("range", (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (
            f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        )
        return value, f"'{key}' = {value!r} is out of range {bounds}"
    return value, None
