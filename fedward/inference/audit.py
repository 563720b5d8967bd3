"""Membership-inference audit at a site: does the model betray its training images.

Runs at the hospital, on its own data, and writes only aggregate figures
locally. Two attacks score every image; a higher score says "member":

- **loss**: the model's loss on the image, negated (Yeom et al. 2018);
- **lira** (offline LiRA, Carlini et al. 2022): the image's logit-scaled
  confidence ``log p_y - log(1 - p_y)`` under the model, standardised by the
  same figure under reference models that never saw the image (trained on one
  half of the site's held-out images; the other half are the non-members), so
  that images that are merely easy do not look like members.

Each attack gives the ROC AUC over the site's training images (members) vs the
held-out half (non-members) and the true-positive rate at 1 % false positives.
AUC near 0.5 and TPR near 0.01 say the model does not reveal membership.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedward.config import FedwardConfig
from fedward.data.datasets import DecodedImages, SiteSplits, make_loader
from fedward.data.transforms import RandomAugment, ScaleToUnit
from fedward.errors import DataError
from fedward.learning.loops import seed_everything, select_device, train
from fedward.models import get_model
from fedward.models.checkpoint import ModelCard
from fedward.runfolder import RunFolder
from fedward.signing import Trust

logger = logging.getLogger(__name__)

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackResult:
    """How well one attack separates members from non-members."""

    attack: str
    auc: float
    tpr_at_1pct_fpr: float
    members: int
    non_members: int

    def to_json(self) -> dict[str, Any]:
        """Kebab-case keys."""
        return {k.replace("_", "-"): v for k, v in dataclasses.asdict(self).items()}


def roc_auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """P(score of a member > score of a non-member), ties counting half."""
    scores = np.concatenate([members, non_members])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    m, n = len(members), len(non_members)
    return float((ranks[:m].sum() - m * (m + 1) / 2) / (m * n))


def tpr_at_fpr(
    members: np.ndarray, non_members: np.ndarray, fpr: float = 0.01
) -> float:
    """Members flagged at the strictest threshold with false positives <= ``fpr``."""
    allowed = int(np.floor(fpr * len(non_members)))
    ranked = np.sort(non_members)[::-1]
    # flag scores strictly above the (allowed + 1)-th highest non-member score
    threshold = ranked[allowed] if allowed < len(ranked) else -np.inf
    return float((members > threshold).mean())


def attack_result(
    name: str, members: np.ndarray, non_members: np.ndarray
) -> AttackResult:
    """AUC and TPR at 1 % FPR of one attack's scores."""
    return AttackResult(
        name,
        roc_auc(members, non_members),
        tpr_at_fpr(members, non_members),
        len(members),
        len(non_members),
    )


@torch.no_grad()
def example_scores(
    logits_of: LogitsFn, data: DecodedImages, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Per image: cross-entropy loss and logit-scaled confidence of the true label."""
    losses, phis = [], []
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].float() / 255.0
        labels = data.labels[start : start + batch_size]
        logp = torch.log_softmax(logits_of(images).double(), dim=1)
        true = logp.gather(1, labels[:, None])[:, 0]
        others = logp.clone()
        others.scatter_(1, labels[:, None], -torch.inf)
        losses.append(-true.numpy())
        phis.append((true - torch.logsumexp(others, dim=1)).numpy())
    return np.concatenate(losses), np.concatenate(phis)


def eager_logits(model: nn.Module) -> LogitsFn:
    """Logits of a PyTorch model, in eval mode on the CPU."""
    model = model.eval().to("cpu")

    def logits(images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(images)
        return out

    return logits


def train_references(
    config: FedwardConfig, model_name: str, data: DecodedImages, count: int, epochs: int
) -> list[nn.Module]:
    """``count`` models, each trained on a random half of ``data`` (seeded)."""
    rng = np.random.default_rng(config.seed + 17)
    models = []
    for k in range(count):
        seed_everything(config.seed + 101 * (k + 1))
        half = np.sort(rng.permutation(len(data))[: max(1, len(data) // 2)])
        model = get_model(
            model_name,
            num_classes=config.num_classes,
            in_channels=config.in_channels,
            image_size=config.image_size,
        )
        augment = (
            RandomAugment(config.shear, config.zoom, config.horizontal_flip)
            if config.augment
            else ScaleToUnit()
        )
        loader = make_loader(
            data.subset(half),
            augment,
            batch_size=config.batch_size,
            shuffle=True,
            seed=config.seed + k,
        )
        train(
            model,
            loader,
            epochs=epochs,
            learning_rate=config.learning_rate,
            device=select_device(config.device),
            num_classes=config.num_classes,
            channels_last=False,
        )
        models.append(model.to("cpu").eval())
    return models


def _held_out(splits: SiteSplits, seed: int) -> tuple[DecodedImages, DecodedImages]:
    """The held-out images in two seeded halves: references' data, non-members."""
    held = [p for p in (splits.val, splits.test) if len(p)]
    if not held or sum(len(p) for p in held) < 4:
        raise DataError("the audit needs at least 4 held-out (val/test) images")
    pooled = DecodedImages(
        torch.cat([p.images for p in held]),
        torch.cat([p.labels for p in held]),
        [path for p in held for path in p.paths],
    )
    order = np.random.default_rng(seed).permutation(len(pooled))
    cut = len(pooled) // 2
    return pooled.subset(np.sort(order[:cut])), pooled.subset(np.sort(order[cut:]))


def audit_membership(
    logits_of: LogitsFn,
    model_name: str,
    splits: SiteSplits,
    config: FedwardConfig,
    *,
    references: int = 4,
    reference_epochs: int | None = None,
) -> list[AttackResult]:
    """Run the loss and LiRA attacks on a site's training vs held-out images.

    Parameters
    ----------
    logits_of
        The audited model: images ``(N, C, H, W)`` in [0, 1] to logits.
    model_name
        Its architecture, for the reference models.
    splits
        The site's splits as the run made them (members: ``train``).
    config
        The run's settings (training recipe of the references, seed).
    references
        Reference models for LiRA (0: loss attack only).
    reference_epochs
        Their epochs; default the run's rounds x local epochs.

    Raises
    ------
    DataError
        If the site has no training images or too few held-out ones.
    """
    if not len(splits.train):
        raise DataError("the audit needs the site's training images")
    reference_data, outside = _held_out(splits, config.seed)
    member_loss, member_phi = example_scores(logits_of, splits.train)
    outside_loss, outside_phi = example_scores(logits_of, outside)
    results = [attack_result("loss", -member_loss, -outside_loss)]
    if references < 1:
        return results
    epochs = reference_epochs or config.num_server_rounds * config.local_epochs
    refs = train_references(config, model_name, reference_data, references, epochs)
    ref_member = np.stack(
        [example_scores(eager_logits(m), splits.train)[1] for m in refs]
    )
    ref_outside = np.stack([example_scores(eager_logits(m), outside)[1] for m in refs])
    mean_m, mean_o = ref_member.mean(0), ref_outside.mean(0)
    # few references: one spread for all images (LiRA's fixed variance)
    deviations = [ref_member - mean_m, ref_outside - mean_o]
    spread = np.concatenate(deviations, axis=1).std() + 1e-6
    results.append(
        attack_result(
            "lira", (member_phi - mean_m) / spread, (outside_phi - mean_o) / spread
        )
    )
    return results


def run_config_for(model: Path, card: ModelCard) -> FedwardConfig:
    """The run's settings: its ``config.json`` if beside the model, else the card's."""
    for folder in (model, model.parent, model.parent.parent):
        if folder.is_dir() and (folder / RunFolder.CONFIG).is_file():
            values = RunFolder(folder).read_json(RunFolder.CONFIG)
            return FedwardConfig.from_mapping(values)
    return FedwardConfig(
        class_names=",".join(card.classes),
        in_channels=card.in_channels,
        image_size=card.image_size,
    )


def run_membership_audit(
    model: Path,
    site: Path,
    *,
    references: int = 4,
    reference_epochs: int | None = None,
    ca: Path | None = None,
    allow_unsigned: bool = False,
) -> dict[str, Any]:
    """Audit a (signed) model on one site's data; return the aggregate figures.

    Raises
    ------
    DataError, ModelError, SignatureError
        If the site's data or the model cannot be used.
    """
    from fedward.data.load import load_site, site_configs
    from fedward.inference.export import Predictor

    predictor = Predictor(model, Trust.from_ca_file(ca, allow_unsigned=allow_unsigned))
    card = predictor.card
    config = run_config_for(model, card)
    if config.classes != card.classes or config.image_size != card.image_size:
        raise DataError(f"{model}: its config.json does not match its model card")
    sites = site_configs([site])
    if len(sites) != 1:
        raise DataError(f"{site}: name one site's site.toml or data folder")
    splits = load_site(sites[0], config)
    eager = predictor.eager_model

    def logits_of(images: torch.Tensor) -> torch.Tensor:
        if eager is not None:
            out: torch.Tensor = eager(images)
            return out
        return torch.from_numpy(
            np.log(np.clip(predictor.probabilities(images), 1e-300, 1))
        )

    results = audit_membership(
        logits_of,
        card.model,
        splits,
        config,
        references=references,
        reference_epochs=reference_epochs,
    )
    return {
        "site": sites[0].name,
        "model": card.model,
        "model-path": str(model),
        "round": card.server_round,
        "members": results[0].members,
        "non-members": results[0].non_members,
        "references": references,
        "attacks": [r.to_json() for r in results],
    }
