import io
import logging

import pytest
from rich.console import Console

from fedward.console import ProgressBar


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_plain_lines_when_not_a_terminal() -> None:
    lines = Lines()
    progress_logger = logging.getLogger("fedward.progress")
    progress_logger.addHandler(lines)
    level = progress_logger.level
    progress_logger.setLevel(logging.INFO)
    try:
        with ProgressBar("round", 2, bar=False) as bar:
            bar.step("loss 0.5")
            bar.step("loss 0.4")
    finally:
        progress_logger.removeHandler(lines)
        progress_logger.setLevel(level)

    assert lines.lines == [
        "round 1/2  loss 0.5",
        "round 2/2  loss 0.4",
    ]


def test_a_rich_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    import rich.progress

    original = rich.progress.Progress

    def progress(*args: object, **kwargs: object) -> rich.progress.Progress:
        return original(*args, console=console, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rich.progress, "Progress", progress)

    with ProgressBar("epoch", 3, bar=True) as bar:
        for _ in range(3):
            bar.step("loss 0.1")

    assert "3/3" in out.getvalue()
    assert "epoch" in out.getvalue()
