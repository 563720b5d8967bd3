"""Console output: fedward's log format, and progress as a Rich bar or log lines.

Logging goes through :mod:`logging` under the ``fedward`` logger; no line names
a patient (no names, IDs or dates from image headers).
"""

from __future__ import annotations

import logging
import os
import sys
from types import TracebackType
from typing import Any

logger = logging.getLogger("fedward.progress")

LOG_FORMAT = "%(levelname)-7s %(message)s"


def setup_logging(verbose: bool = False) -> None:
    """Plain ``fedward`` log lines on stderr; Flower's own only with ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger("fedward")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    # libraries that would log request URLs (which can hold study/instance UIDs)
    for name in ("urllib3", "dicomweb_client"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("FLWR_LOG_LEVEL", "INFO" if verbose else "WARNING")


class ProgressBar:
    """Count steps of one task (rounds, local epochs).

    On a terminal (stderr is a TTY) a Rich progress bar shows the count and the
    latest message; otherwise each step logs ``<description> i/n  <message>``.
    """

    def __init__(
        self, description: str, total: int, *, bar: bool | None = None, done: int = 0
    ) -> None:
        self.description = description
        self.total = total
        self.done = done
        self.bar = sys.stderr.isatty() if bar is None else bar
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.bar:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._rich = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[message]}"),
                transient=False,
            )
            self._rich.start()
            self._task = self._rich.add_task(
                self.description, total=self.total, completed=self.done, message=""
            )
        return self

    def step(self, message: str = "") -> None:
        """One step done, with a short status message."""
        self.done += 1
        if self._rich is not None:
            self._rich.update(self._task, advance=1, message=message)
        else:
            logger.info(
                "%s %d/%d  %s", self.description, self.done, self.total, message
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rich is not None:
            self._rich.stop()
