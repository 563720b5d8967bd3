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
from fedward.signing import Signer, Trust


def finish_run(folder: RunFolder, signer: Signer | None = None) -> None:
    """Write ``metrics.png`` and export the final global model to ``export/``.

    ``model.pt`` must carry the signature of ``signer`` (default: the run's own,
    :meth:`RunFolder.signer`), which then signs the export too.

    Raises
    ------
    SignatureError
        If ``model.pt`` was changed after the run signed it.
    """
    plot_rounds(folder.read_jsonl(RunFolder.METRICS), folder.file(RunFolder.PLOT))
    if folder.checkpoint.is_file():
        signer = signer or folder.signer()
        folder.verify(Trust.of_signer(signer))
        card, state = load_checkpoint(folder.checkpoint)
        export_model(card, state, folder.export_dir, signer=signer)
