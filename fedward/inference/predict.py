"""Batch prediction over files and folders, written as a CSV."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from pathlib import Path

from fedward.data.discovery import list_files
from fedward.errors import DataError
from fedward.inference.export import Predictor

logger = logging.getLogger(__name__)


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and every non-hidden file below given folders.

    Raises
    ------
    DataError
        If a path does not exist.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(list_files(path))
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"no such file or folder: {path}")
    return files


def predict_files(
    predictor: Predictor, paths: Iterable[Path], out: Path
) -> tuple[int, int]:
    """Write ``path, prediction, p_<class>..., error`` rows; return (done, failed).

    A file that does not decode gets a row with its reason and no probabilities.
    """
    classes = predictor.card.classes
    done = failed = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "prediction", *(f"p_{c}" for c in classes), "error"])
        for path in expand(paths):
            try:
                probs = predictor.probabilities(predictor.load_image(path))[0]
            except DataError as exc:
                logger.warning("cannot predict %s: %s", path.name, exc.problems[0])
                writer.writerow(
                    [str(path), "", *([""] * len(classes)), exc.problems[0]]
                )
                failed += 1
                continue
            label = classes[int(probs.argmax())]
            writer.writerow([str(path), label, *(f"{p:.6f}" for p in probs), ""])
            done += 1
    return done, failed
