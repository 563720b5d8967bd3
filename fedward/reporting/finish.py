"""What a finished federation leaves besides its records: the plot and the export.

The Flower app writes the run folder's records and the latest weights; the
host that ran it (``fedward simulate``, ``fedward server``) then calls
:func:`finish_run`, so that plotting and exporting stay outside the approved app.
"""

from __future__ import annotations

from fedward.inference.export import export_model
from fedward.models.checkpoint import load_checkpoint
from fedward.reporting.plots import plot_rounds
from fedward.runfolder import RunFolder


def finish_run(folder: RunFolder) -> None:
    """Write ``metrics.png`` and export the final global model to ``export/``."""
    plot_rounds(folder.read_jsonl(RunFolder.METRICS), folder.file(RunFolder.PLOT))
    if folder.checkpoint.is_file():
        export_model(*load_checkpoint(folder.checkpoint), folder.export_dir)
