"""A hospital's privacy ledger: every private round it trained, on its own disk.

The ledger is one JSON line per round, keyed by site (not by run), so it
outlives daemon restarts and runs. Each line carries the SHA-256 of the line
before it and its own (a hash chain), and a small ``.head`` file beside it
records the number of lines and the last hash, so an edited, reordered,
removed or truncated line is found on the next read. An entry is written and
fsynced before the update it accounts for leaves the site. A damaged ledger
raises :class:`~fedward.errors.PrivacyLedgerError`: training stops until a
person looks, the budget is never reset.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedward.errors import PrivacyLedgerError

GENESIS = "0" * 64
HEAD_SUFFIX = ".head"


@dataclass(frozen=True)
class LedgerEntry:
    """One private round at one site.

    ``noise_multiplier``, ``sample_rate`` and ``steps`` define the mechanism;
    the ε figures are what the accountant gave when the round was written
    (``epsilon``: what the round added to the lifetime ε; ``run_epsilon``: the
    run's ε at ``delta`` after the round; ``lifetime_epsilon`` at
    ``lifetime_delta``).
    """

    site: str
    run: str
    round: int
    epsilon: float
    run_epsilon: float
    lifetime_epsilon: float
    delta: float
    lifetime_delta: float
    noise_multiplier: float
    max_grad_norm: float
    steps: int
    sample_rate: float
    unit: str
    units: int
    accountant: str
    time: str = ""

    def to_json(self) -> dict[str, Any]:
        """Kebab-case keys, as the ledger file holds them."""
        return {k.replace("_", "-"): v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> LedgerEntry:
        """From a ledger line (without its chain fields).

        Raises
        ------
        TypeError
            If a field is missing or unexpected.
        """
        return cls(**{k.replace("-", "_"): v for k, v in values.items()})


def _digest(prev: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev + canonical).encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PrivacyLedger:
    """The append-only, hash-chained ledger at ``path``.

    Parameters
    ----------
    path
        The ledger file (JSON lines); ``<path>.head`` is written beside it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.head = self.path.with_name(self.path.name + HEAD_SUFFIX)

    def __repr__(self) -> str:
        return f"PrivacyLedger({str(self.path)!r})"

    def _damaged(self, detail: str) -> PrivacyLedgerError:
        return PrivacyLedgerError(
            f"privacy ledger {self.path} is damaged ({detail}); private training "
            "stops until it is restored from a backup (the budget is never reset)"
        )

    def entries(self) -> list[LedgerEntry]:
        """Every entry, after checking the chain and the head.

        Raises
        ------
        PrivacyLedgerError
            If a line is not JSON, does not chain to the one before, holds
            unexpected fields, or the ledger is shorter than its head records.
        """
        return self._read()[0]

    def _read(self) -> tuple[list[LedgerEntry], list[str], int]:
        """Entries, their hashes, and the length of the file's intact part."""
        try:
            text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
            head = (
                json.loads(self.head.read_text(encoding="utf-8"))
                if self.head.exists()
                else None
            )
        except (OSError, ValueError) as exc:
            raise self._damaged(f"unreadable: {exc}") from None
        if text and head is None:
            raise self._damaged(f"{self.head.name} is missing")
        count = head.get("entries") if isinstance(head, dict) else 0
        if not isinstance(count, int):
            raise self._damaged("its head is not a ledger head")
        lines = text.splitlines()
        intact = len(text)
        if text and not text.endswith("\n") and len(lines) > count:
            # a write torn by a crash: its update never left the site
            lines.pop()
            intact = text.rfind("\n") + 1
        entries, hashes = self._chain(lines)
        if count > len(entries):
            raise self._damaged(
                f"{len(entries)} entries but its head records {count}; "
                "entries were removed"
            )
        if count and isinstance(head, dict) and hashes[count - 1] != head.get("hash"):
            raise self._damaged("its head does not match the chain")
        return entries, hashes, intact

    def _chain(self, lines: list[str]) -> tuple[list[LedgerEntry], list[str]]:
        entries: list[LedgerEntry] = []
        hashes: list[str] = []
        prev = GENESIS
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                body = {k: v for k, v in record.items() if k not in ("prev", "hash")}
                ok = record["prev"] == prev and record["hash"] == _digest(prev, body)
                entry = LedgerEntry.from_json(body)
            except (ValueError, KeyError, TypeError, AttributeError):
                raise self._damaged(f"line {number} is not a ledger entry") from None
            if not ok:
                raise self._damaged(f"line {number} was changed or is out of order")
            prev = record["hash"]
            entries.append(entry)
            hashes.append(prev)
        return entries, hashes

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def append(self, entry: LedgerEntry) -> LedgerEntry:
        """Check the ledger, then append ``entry`` durably (fsynced) and return it.

        Raises
        ------
        PrivacyLedgerError
            If the ledger is damaged or cannot be written.
        """
        with self._locked():
            existing, hashes, intact = self._read()
            prev = hashes[-1] if hashes else GENESIS
            if not entry.time:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                entry = dataclasses.replace(entry, time=stamp)
            body = entry.to_json()
            digest = _digest(prev, body)
            line = json.dumps({**body, "prev": prev, "hash": digest}, sort_keys=True)
            try:
                new = not self.head.exists()
                if new:
                    self._write_head(0, GENESIS)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.truncate(intact)  # drop a torn last line, if any
                    fh.write(line + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                self._write_head(len(existing) + 1, digest)
            except OSError as exc:
                raise PrivacyLedgerError(
                    f"privacy ledger {self.path} cannot be written ({exc.strerror}); "
                    "no update leaves the site unrecorded"
                ) from None
        return entry

    def _write_head(self, count: int, digest: str) -> None:
        tmp = self.head.with_name(self.head.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump({"entries": count, "hash": digest}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.head)
        _fsync_dir(self.head.parent)
