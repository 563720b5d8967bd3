"""What a hospital keeps between rounds and restarts, and where.

With ``local-norm`` the hospital's normalisation layers never travel: each
train or evaluate request's weights are loaded *around* them
(:func:`global_model`), and after training they are written to the hospital's
own state folder, from which the next round, a restarted SuperNode, evaluation
and personalisation read them. The fine-tuned weights of personalisation stay
there too. A simulated hospital's folder is ``sites/<site>/`` in the run
folder; a deployed hospital's is ``run-<id>.local/`` beside the final models it
keeps (``models-dir`` in its ``site.toml``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context
from torch import nn

from fedward.config import FedwardConfig, SiteConfig
from fedward.fl.protocol import MetricKey, load_arrays
from fedward.learning.local_norm import load_norm_state, norm_keys, save_norm_state
from fedward.learning.site import Site
from fedward.runfolder import RunFolder

logger = logging.getLogger(__name__)


def state_folder(
    context: Context, config: FedwardConfig, site: SiteConfig | None, name: str
) -> Path:
    """The folder a hospital keeps its own state in for this run."""
    if site is None:
        return RunFolder(config.run_dir).site_dir(name)
    base = (
        Path(site.models_dir)
        if site.models_dir
        else site.state_dir or Path(".fedward") / site.name
    )
    return base / f"run-{context.run_id}.local"


@dataclass(frozen=True)
class LocalState:
    """A hospital's own weights: which keys stay local, and where they are kept."""

    folder: Path
    keys: frozenset[str]

    def restore(self, model: nn.Module) -> None:
        """Put the hospital's saved normalisation state into ``model``, if any."""
        if self.keys and load_norm_state(model, self.folder / RunFolder.SITE_NORM):
            logger.debug("restored local normalisation state from %s", self.folder)

    def save(self, model: nn.Module) -> None:
        """Keep the model's normalisation state for the next round (local-norm)."""
        if self.keys:
            save_norm_state(model, self.folder / RunFolder.SITE_NORM)

    def save_personalized(self, model: nn.Module) -> Path:
        """Keep the personalised weights (all of them) at the hospital."""
        from safetensors.torch import save_file

        path = self.folder / RunFolder.SITE_PERSONALIZED
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
        }
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(state, str(tmp))
        tmp.replace(path)
        return path


def global_model(
    site: Site,
    arrays: ArrayRecord,
    context: Context,
    site_config: SiteConfig | None,
) -> tuple[nn.Module, LocalState]:
    """The model the server sent, with the hospital's own normalisation state.

    Raises
    ------
    WeightsError
        If the weights do not fit the model (with ``local-norm``: if they hold
        a normalisation layer, or lack anything else).
    """
    config = site.config
    model = site.new_model()
    keys = norm_keys(model) if config.norm_stays_local else frozenset()
    local = LocalState(state_folder(context, config, site_config, site.name), keys)
    load_arrays(model, arrays, exclude=keys)
    local.restore(model)
    return model, local


def harmonize_scale(config: ConfigRecord) -> list[float]:
    """The standard intensity scale the server sent (empty: no harmonisation)."""
    value = config.get(MetricKey.HARMONIZE_SCALE, [])
    return [float(v) for v in value] if isinstance(value, list) else []
