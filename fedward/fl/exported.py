"""Which round's global weights a run keeps: the last, or the best (``export-round``).

Every round the latest global weights go to the run folder's ``model.pt``
(signed), as a resumed run needs them. With ``export-round = "best"`` the round
that is best by ``best-metric`` so far is also kept, in ``best-model.pt``
(signed); when the federation ends it becomes ``model.pt``, the model that is
exported, personalised and delivered to the hospitals.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch

from fedward.config import FedwardConfig
from fedward.models.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from fedward.runfolder import RunFolder
from fedward.signing import Signer

logger = logging.getLogger(__name__)


class ExportedRound:
    """Keeps the latest and (``export-round = "best"``) the best round on disk.

    Parameters
    ----------
    config
        The run's configuration (``export-round``, the model card).
    folder, signer
        Where the weights go, and who signs them.
    scale
        The harmonisation scale, saved in the model card.
    """

    def __init__(
        self,
        config: FedwardConfig,
        folder: RunFolder,
        signer: Signer,
        scale: Sequence[float] = (),
    ) -> None:
        self.config = config
        self.folder = folder
        self.signer = signer
        self.scale = list(scale)

    def card(self, server_round: int) -> ModelCard:
        """The model card of round ``server_round``'s weights."""
        return ModelCard.of_run(self.config, server_round, self.scale)

    def keep_if_best(
        self,
        server_round: int,
        state: Mapping[str, torch.Tensor],
        best_round: int | None,
    ) -> None:
        """Keep round ``server_round``'s weights in ``best-model.pt`` if best so far.

        ``model.pt`` (the latest round) and the signature are written by the
        round's resume point (:class:`fedward.fl.resume.ResumePoint`), which
        signs every file of the run folder, this one included.
        """
        if self.config.export_round == "best" and best_round == server_round:
            card = self.card(server_round)
            save_checkpoint(self.folder.file(RunFolder.BEST_CHECKPOINT), card, state)

    def resumed(self, server_round: int, state: Mapping[str, torch.Tensor]) -> None:
        """Continue after ``server_round``: its weights in ``model.pt``, signed.

        ``model.pt`` may be newer than its manifest if the crash came between
        writing them; the resume point's weights are the checked ones.
        """
        card = self.card(server_round)
        save_checkpoint(self.folder.checkpoint, card, state)
        self.folder.sign(self.signer, card.meta())

    def final(self) -> tuple[ModelCard, dict[str, torch.Tensor]]:
        """The exported round's card and weights, left in ``model.pt`` (signed)."""
        best = self.folder.file(RunFolder.BEST_CHECKPOINT)
        if self.config.export_round == "best" and best.is_file():
            os.replace(best, self.folder.checkpoint)
            card, state = load_checkpoint(self.folder.checkpoint)
            self.folder.sign(self.signer, card.meta())
            logger.info("exporting round %d, the best by %s",
                        card.server_round, self.config.best_metric)  # fmt: skip
            return card, state
        return load_checkpoint(self.folder.checkpoint)
