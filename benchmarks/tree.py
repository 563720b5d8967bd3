"""Wall time and peak memory of a command and every process it starts.

Memory is sampled from a thread: the summed resident set size (RSS) of the
process tree every 0.1 s, which counts a shared library once per process that
maps it (two processes with torch loaded count torch twice), and the summed
proportional set size (PSS) every 0.5 s, which splits shared pages between the
processes sharing them: what the tree really occupies.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

MIB = 2**20


@dataclass
class Usage:
    """What a command used."""

    wall_s: float
    peak_rss: int
    peak_pss: int
    processes: int

    @property
    def rss_mib(self) -> float:
        return self.peak_rss / MIB

    @property
    def pss_mib(self) -> float:
        return self.peak_pss / MIB


class TreeMemory:
    """Peak summed RSS and PSS of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.1, pss_every: int = 5) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.pss_every = pss_every
        self.peak_rss = 0
        self.peak_pss = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, pss: bool) -> None:
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return
        self.processes = max(self.processes, len(procs))
        rss = shared = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if pss:
                    info = p.memory_full_info()
                    rss += info.rss
                    shared += info.pss
                else:
                    rss += p.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, shared)

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            self._sample(pss=tick % self.pss_every == 0)
            tick += 1
            time.sleep(self.interval)

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


def run_measured(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[Usage, str]:
    """Run a command to the end; its usage and the tail of its stderr.

    Raises
    ------
    RuntimeError
        If the command fails.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    memory = TreeMemory(proc.pid)
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    memory.stop()
    text = err.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed ({proc.returncode}):\n{text[-3000:]}")
    return Usage(wall, memory.peak_rss, memory.peak_pss, memory.processes), text
