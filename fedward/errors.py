"""The error tree: each user-facing failure has a type and an exit code."""

from __future__ import annotations

from collections.abc import Sequence


class FedwardError(Exception):
    """Base of all errors fedward raises for user-facing problems.

    Parameters
    ----------
    problems
        One line per problem; the CLI prints each on its own line.
    """

    exit_code = 1

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class ConfigError(FedwardError):
    """The configuration has unknown keys, wrong types or out-of-range values."""

    exit_code = 2


class DataError(FedwardError):
    """A data source is missing, empty or unusable."""

    exit_code = 3


class ModelError(FedwardError):
    """An unknown model name or an impossible model shape."""

    exit_code = 4


class WeightsError(FedwardError):
    """Model weights do not match the expected model or are not finite."""

    exit_code = 5


class SignatureError(FedwardError):
    """A model file is unsigned, changed after signing, or signed by a stranger."""

    exit_code = 6


class ResumeError(FedwardError):
    """A run cannot be resumed: no complete round saved, or another run's folder."""

    exit_code = 10
