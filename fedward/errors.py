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


class PrivacyError(FedwardError):
    """A hospital's privacy policy refuses a round (e.g. the run is not private)."""

    exit_code = 7


class PrivacyBudgetExceeded(PrivacyError):  # noqa: N818 - named in STYLE.md
    """A round would take a hospital over its lifetime privacy budget."""

    exit_code = 8


class PrivacyLedgerError(PrivacyError):
    """A hospital's privacy ledger is damaged, unreadable or cannot be written."""

    exit_code = 9


class SecureAggregationError(FedwardError):
    """A secure-aggregation step failed: a bad signature, share or threshold.

    Raised at a hospital, it refuses the step (the server sees an error reply and
    treats the hospital as dropped); at the server, it aborts the secure sum of
    that round, which leaves the global model as it was.
    """

    exit_code = 12


class ResumeError(FedwardError):
    """A run cannot be resumed: no complete round saved, or another run's folder."""

    exit_code = 10
