"""Resume points: what the server saves each round to continue after a crash.

After every complete round the ServerApp writes ``resume/round-NNNN/`` in the run
folder: ``model.pt`` (the global weights, a hard link to the run's own
``model.pt`` of that round), ``state.pt`` (round, the strategy's state, the
random generators' states, the run's id, its configuration and the seconds spent
so far) and ``manifest.json`` over both, signed by the run's signer (the server's
model-signing key, or a simulation's run-local key). The manifest is written
last and atomically, so a round folder without one is a write the crash
interrupted: it is skipped, and the previous round is resumed. A folder whose
manifest does not match, or was signed by another key, is refused
(:class:`~fedward.errors.SignatureError`), never silently skipped. The two
latest points are kept.

Privacy: the server holds no accountant; each hospital's ledger is on its own
disk. A resumed run sends the same ``run-id`` in every instruction, and a
hospital's training for a given round is seeded by the round, so a round run
again after a crash is the same release under the same ``(run-id, round)`` key.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedward.config import ConfigValue, FedwardConfig
from fedward.errors import ConfigError, ResumeError
from fedward.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from fedward.runfolder import RunFolder
from fedward.signing import Signer, Trust, sha256_file, verify_folder

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CHECKPOINT = RunFolder.CHECKPOINT
KEEP = 2
# keys a resumed run may set differently from the run it continues
MAY_DIFFER = frozenset({"resume", "run-dir", "data-root", "round-timeout"})


def capture_rng() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    saved_keys = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, saved_keys, pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rng` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def new_run_id() -> str:
    """A fresh run id: stays the same when the run is resumed."""
    return uuid.uuid4().hex


@dataclass
class ResumePoint:
    """Everything needed to continue a run after ``server_round``.

    Parameters
    ----------
    server_round
        The last complete round.
    weights
        The global weights after that round.
    run_id
        The run's id, the same in every session of the run.
    config
        The run's configuration (kebab-case keys).
    strategy
        The strategy's :meth:`state`.
    rng
        :func:`capture_rng` at the end of the round.
    elapsed
        Seconds the run has taken so far, over all its sessions.
    """

    server_round: int
    weights: dict[str, torch.Tensor]
    run_id: str
    config: dict[str, ConfigValue]
    strategy: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=capture_rng)
    elapsed: float = 0.0

    def check_config(self, config: FedwardConfig) -> None:
        """Refuse to continue with settings the saved run did not have.

        Raises
        ------
        ConfigError
            Naming every key whose value differs.
        """
        now = config.to_run_config()
        problems = [
            f"resume: '{key}' is {now.get(key)!r}; the run was started with {value!r}"
            for key, value in sorted(self.config.items())
            if key not in MAY_DIFFER and now.get(key) != value
        ]
        if problems:
            raise ConfigError(problems)

    def save(self, folder: RunFolder, signer: Signer, card: ModelCard) -> Path:
        """Save the round: the run's ``model.pt`` and ``resume/round-NNNN/``, signed.

        The weights are written once: the round folder's ``model.pt`` is a hard
        link to the run's (a copy where links are not possible), and one digest
        serves both manifests. All but the two latest points are removed.
        """
        folder.path.mkdir(parents=True, exist_ok=True)
        save_checkpoint(folder.checkpoint, card, self.weights)
        digest = sha256_file(folder.checkpoint)
        meta = card.meta()
        signed = [n for n in RunFolder.SIGNED if folder.has(n)]  # best-model.pt too
        signer.sign_folder(folder.path, signed, meta, {CHECKPOINT: digest})
        target = folder.resume_point(self.server_round)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        try:
            os.link(folder.checkpoint, target / CHECKPOINT)
        except OSError:
            shutil.copyfile(folder.checkpoint, target / CHECKPOINT)
        payload = {
            "round": self.server_round,
            "run-id": self.run_id,
            "config": self.config,
            "strategy": self.strategy,
            "rng": self.rng,
            "elapsed": self.elapsed,
        }
        torch.save(payload, target / STATE_FILE)
        signer.sign_folder(
            target,
            [CHECKPOINT, STATE_FILE],
            {**meta, "run-id": self.run_id},
            {CHECKPOINT: digest},
        )
        for old in _round_dirs(folder)[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    @classmethod
    def load_latest(cls, folder: RunFolder, trust: Trust) -> ResumePoint:
        """The latest complete point, checked against its signed manifest.

        Raises
        ------
        ResumeError
            If the folder has no complete round to resume from.
        SignatureError
            If the latest point is unsigned, changed or signed by another key.
        """
        for path in reversed(_round_dirs(folder)):
            if not (path / RunFolder.MANIFEST).is_file():
                logger.warning("%s: written only in part (a crash); skipped", path)
                continue
            verify_folder(path, [CHECKPOINT, STATE_FILE], trust)
            _, weights = load_checkpoint(path / CHECKPOINT)
            payload = torch.load(
                path / STATE_FILE, map_location="cpu", weights_only=True
            )
            return cls(
                server_round=int(payload["round"]),
                weights=weights,
                run_id=str(payload["run-id"]),
                config=dict(payload["config"]),
                strategy=dict(payload["strategy"]),
                rng=dict(payload["rng"]),
                elapsed=float(payload["elapsed"]),
            )
        raise ResumeError(
            f"{folder.path}: no complete round to resume from (nothing in "
            f"{folder.file(RunFolder.RESUME)})"
        )


def _round_dirs(folder: RunFolder) -> list[Path]:
    root = folder.file(RunFolder.RESUME)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.startswith("round-")
    )
