"""The run folder: every file a federation writes, named and read/written here only.

A run folder holds what a run produced and what a study report needs, as plain
files a person can open. Nothing else in fedward spells a run-folder file name.

==================  =============================================================
``config.json``     the resolved configuration, every key
``metrics.jsonl``   one JSON line per round and scope (train, global, site, ...)
``curves.jsonl``    per round and scope: the counts behind every figure
``metrics.csv``     every row of ``metrics.jsonl`` as a spreadsheet
``summary.json``    final and best figures
``metrics.png``     accuracy, recall and F1 per round
``model.pt``        the latest global weights with their model card; when the
                    run ends, the exported round's (``export-round``)
``best-model.pt``   the best round so far (``export-round = "best"``, until the
                    run ends)
``manifest.json``   SHA-256 of ``model.pt`` and its model card, signed
``run-signing.key`` a simulation's run-local signing key (not in deployment)
``final-model.json`` which hospitals accepted the signed final model
``export/``         the final model as ONNX, TorchScript and safetensors, with
                    ``model.json`` (its card) and a signed ``manifest.json``
``baselines.json``  local-only and pooled figures (``--baselines``)
``data-check.json`` every hospital's aggregate data statistics and warnings
                    (in secure mode: that no check ran, and why)
``secure-aggregation.json`` secure mode: its parameters, each round's outcome and
                    participation, why there is no per-hospital table
``personalization.json`` per hospital: the global and the fine-tuned model's
                    figures on the same images (``personalize-epochs``)
``attacks.json``    the misbehaving hospitals a simulation was told to simulate
``sites/<site>/``   a simulated hospital's own files (in deployment they are at
                    the hospital): ``local-norm.safetensors`` (``local-norm``),
                    ``personalized.safetensors`` (its fine-tuned weights),
                    ``privacy-ledger.jsonl`` (``dp``), secure aggregation's
                    identity key and the figures it kept (``figures.jsonl``);
                    ``sites/ca.*`` is a secure simulation's run-local CA
``report.*``        the study report (HTML, Markdown) and its figures
``resume/``         ``round-NNNN/``: what ``--resume`` continues from (the two
                    latest rounds: weights and server state, signed)
==================  =============================================================
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from fedward.errors import DataError
from fedward.signing import MANIFEST_FILE, Manifest, Signer, Trust, verify_folder


def json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy whose float NaN values are ``None`` (JSON has no NaN)."""
    return {
        k: (None if isinstance(v, float) and math.isnan(v) else v)
        for k, v in values.items()
    }


class RunFolder:
    """One run's folder: the path of each file and how it is read and written.

    Parameters
    ----------
    path
        The folder; created on the first write.
    """

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    CURVES = "curves.jsonl"
    CSV = "metrics.csv"
    SUMMARY = "summary.json"
    PLOT = "metrics.png"
    CHECKPOINT = "model.pt"
    MANIFEST = MANIFEST_FILE
    SIGNING_KEY = "run-signing.key"
    FINAL_MODEL = "final-model.json"
    EXPORT = "export"
    # an export folder (and the final model a hospital keeps) holds these
    MODEL_META = "model.json"
    MODEL_WEIGHTS = "model.safetensors"
    MODEL_TORCHSCRIPT = "model.torchscript.pt"
    MODEL_ONNX = "model.onnx"
    BEST_CHECKPOINT = "best-model.pt"
    # what the run folder's manifest covers: what a resumed run starts from
    SIGNED: ClassVar[tuple[str, ...]] = (CHECKPOINT, BEST_CHECKPOINT)
    BASELINES = "baselines.json"
    BASELINES_PLOT = "baselines.png"
    DATA_CHECK = "data-check.json"
    SECURE = "secure-aggregation.json"
    PERSONALIZATION = "personalization.json"
    ATTACKS = "attacks.json"
    SITES = "sites"
    # a hospital's own state folder (sites/<site>/ in simulation) holds these
    SITE_NORM = "local-norm.safetensors"
    SITE_PERSONALIZED = "personalized.safetensors"
    SITE_LEDGER = "privacy-ledger.jsonl"
    SITE_FIGURES = "figures.jsonl"  # what a hospital kept under secure aggregation
    RESUME = "resume"
    REPORT_HTML = "report.html"
    REPORT_MD = "report.md"
    REPORT_FIGURES: ClassVar[dict[str, str]] = {
        "sites": "sites.png",
        "confusion": "confusion.png",
        "roc": "roc.png",
        "calibration": "calibration.png",
    }

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of one of the files named on this class."""
        return self.path / name

    @property
    def checkpoint(self) -> Path:
        """The latest global weights (``model.pt``)."""
        return self.path / self.CHECKPOINT

    def privacy_ledger(self, site: str) -> Path:
        """A simulated hospital's privacy ledger."""
        return self.site_dir(site) / self.SITE_LEDGER

    def site_dir(self, site: str) -> Path:
        """A simulated hospital's own state folder (``sites/<site>/``)."""
        return self.path / self.SITES / site

    def resume_point(self, server_round: int) -> Path:
        """The folder of the resume point saved after ``server_round``."""
        return self.path / self.RESUME / f"round-{server_round:04d}"

    @property
    def export_dir(self) -> Path:
        """The folder of the exported final model."""
        return self.path / self.EXPORT

    # --- signing ---------------------------------------------------------------------

    def signer(self) -> Signer:
        """Who signs this run's files: the server's certificate, else the run key."""
        return Signer.for_run(self.file(self.SIGNING_KEY))

    def sign(self, signer: Signer, card: Mapping[str, Any]) -> Path:
        """Sign the run's :attr:`SIGNED` files that exist, with their model card."""
        return signer.sign_folder(
            self.path, [n for n in self.SIGNED if self.has(n)], card
        )

    def verify(self, trust: Trust) -> Manifest | None:
        """Check ``model.pt`` (and the other :attr:`SIGNED` files) are as signed.

        Raises
        ------
        SignatureError
            Naming the file that is unsigned, changed or signed by another key.
        """
        names = [n for n in self.SIGNED if self.has(n)] or [self.CHECKPOINT]
        return verify_folder(self.path, names, trust)

    def verify_own(self) -> Manifest | None:
        """Check the run's files carry this run's own signature (before resuming).

        Only the key that signs for this run now (:meth:`signer`) is accepted, so
        a checkpoint changed, unsigned, or signed by anyone else is refused.

        Raises
        ------
        SignatureError
            Naming the file that is unsigned, changed or signed by another key.
        """
        return self.verify(Trust.of_signer(self.signer()))

    # --- writing ---------------------------------------------------------------------

    def start(self, config: Mapping[str, Any]) -> None:
        """Create the folder, write ``config.json`` and empty the per-round files.

        Resume points of an earlier run in the same folder are removed.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_json(self.CONFIG, dict(config))
        for name in (self.METRICS, self.CURVES):
            self.file(name).write_text("", encoding="utf-8")
        shutil.rmtree(self.path / self.RESUME, ignore_errors=True)

    def write_json(self, name: str, data: Any) -> Path:
        """Write one JSON file atomically (a reader never sees half of it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.file(name)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target

    def keep_rounds(self, name: str, last_round: int) -> list[dict[str, Any]]:
        """Rewrite a JSON-lines file (atomically) without rows after ``last_round``.

        What a resumed run does to the rows of the round a crash interrupted.
        Returns the rows kept.
        """
        rows = [r for r in self.iter_jsonl(name) if int(r["round"]) <= last_round]
        target = self.file(name)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, target)
        return rows

    def append_jsonl(self, name: str, row: Mapping[str, Any]) -> None:
        """Append one JSON line."""
        self.path.mkdir(parents=True, exist_ok=True)
        with self.file(name).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(json_safe(row)) + "\n")

    # --- reading ---------------------------------------------------------------------

    def has(self, name: str) -> bool:
        """Whether the file exists."""
        return self.file(name).is_file()

    def read_json(self, name: str) -> Any:
        """One JSON file.

        Raises
        ------
        DataError
            If the file is missing or is not JSON.
        """
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{self.path}: no {name} (not a finished run?)") from None
        except ValueError as exc:
            raise DataError(f"{path} is not valid JSON: {exc}") from None

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """Every line of a JSON-lines file (none if it does not exist)."""
        return list(self.iter_jsonl(name))

    def iter_jsonl(self, name: str) -> Iterator[dict[str, Any]]:
        """The lines of a JSON-lines file, one at a time.

        Raises
        ------
        DataError
            If a line is not JSON.
        """
        path = self.file(name)
        if not path.is_file():
            return
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise DataError(f"{path}:{number} is not JSON: {exc}") from None

    def require(self, *names: str) -> None:
        """Check that every named file exists.

        Raises
        ------
        DataError
            Naming every missing file at once.
        """
        missing = [n for n in names if not self.has(n)]
        if missing:
            raise DataError(
                [f"{self.path}: no {n} (not a finished run folder?)" for n in missing]
            )
