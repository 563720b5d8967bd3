"""Misbehaving hospitals, for evaluating the server's defences in simulation only.

A scenario file's ``[[attack]]`` tables (``site``, ``kind``, ``factor``;
:class:`fedward.config.AttackConfig`) name hospitals that misbehave in every
round. ``fedward simulate`` hands :class:`Attacks` to the ClientApp as its
:class:`~fedward.learning.site.TrainHook`; a deployed hospital has no hook.

==================  ===========================================================
``sign-flip``       sends ``w_global - factor * update`` (the update reversed)
``scale``           sends ``w_global + factor * update``
``gaussian-noise``  adds noise of ``factor`` x the update's RMS to each tensor
``nan``             sends NaN weights
``label-flip``      trains on labels of which a share ``factor`` (at most all)
                    is changed to the next class
==================  ===========================================================
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from fedward.config import AttackConfig, read_toml_tables
from fedward.data.datasets import SiteSplits
from fedward.errors import ConfigError
from fedward.learning.site import Site

logger = logging.getLogger(__name__)

WEIGHT_ATTACKS = ("sign-flip", "scale", "gaussian-noise", "nan")


def read_attacks(scenario: Path | None) -> list[AttackConfig]:
    """The ``[[attack]]`` tables of a scenario file (none without a file).

    Raises
    ------
    ConfigError
        Naming every problem of every table at once.
    """
    if scenario is None:
        return []
    return AttackConfig.from_tables(read_toml_tables(scenario).get("attack", []))


def parse_attack(text: str) -> AttackConfig:
    """``site:kind[:factor]`` (the ``--attack`` flag) as an attack.

    Raises
    ------
    ConfigError
        If the text is not of that form or a value is wrong.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(f"--attack expects site:kind[:factor], got {text!r}")
    values: dict[str, object] = {"site": parts[0], "kind": parts[1]}
    if len(parts) == 3:
        try:
            values["factor"] = float(parts[2])
        except ValueError:
            raise ConfigError(
                f"--attack: factor must be a number in {text!r}"
            ) from None
    return AttackConfig.from_mapping(values)


def check_sites(attacks: Sequence[AttackConfig], sites: Sequence[str]) -> None:
    """Check that every attack names a simulated hospital.

    Raises
    ------
    ConfigError
        Naming every attack whose site is not simulated.
    """
    unknown = [a.site for a in attacks if a.site not in sites]
    if unknown:
        raise ConfigError(
            [
                f"attack: no simulated hospital named {name!r} "
                f"(the hospitals are {', '.join(sites)})"
                for name in unknown
            ]
        )


def flip_labels(site: Site, share: float, seed: int) -> Site:
    """The site with a share of its training labels moved to the next class."""
    train = site.data.train
    labels = train.labels.clone()
    n = round(min(share, 1.0) * len(labels))
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(labels), generator=generator)[:n]
    labels[chosen] = (labels[chosen] + 1) % site.config.num_classes
    flipped = dataclasses.replace(train, labels=labels)
    data = SiteSplits(flipped, site.data.val, site.data.test)
    return Site(site.name, data, site.config)


class Attacks:
    """The misbehaviour of the hospitals a simulation names (a ``TrainHook``)."""

    def __init__(self, attacks: Sequence[AttackConfig], seed: int = 0) -> None:
        self.attacks = list(attacks)
        self.seed = seed

    def _of(self, site: Site) -> list[AttackConfig]:
        return [a for a in self.attacks if a.site == site.name]

    def before_fit(self, site: Site, server_round: int) -> Site:
        """A label-flipping hospital trains on flipped labels."""
        for attack in self._of(site):
            if attack.kind == "label-flip":
                logger.info("attack: %s trains on flipped labels", site.name)
                site = flip_labels(site, attack.factor, self.seed)
        return site

    def after_fit(
        self,
        site: Site,
        server_round: int,
        sent: dict[str, torch.Tensor],
        trained: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """A hospital with a weight attack sends tampered weights."""
        out = dict(trained)
        for attack in self._of(site):
            if attack.kind not in WEIGHT_ATTACKS:
                continue
            logger.info("attack: %s sends a %s update", site.name, attack.kind)
            generator = torch.Generator().manual_seed(self.seed + server_round)
            out = {
                key: tamper(attack, sent[key], value, generator)
                if value.is_floating_point()
                else value
                for key, value in out.items()
            }
        return out


def tamper(
    attack: AttackConfig,
    sent: torch.Tensor,
    trained: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """One tensor as a hospital running ``attack`` sends it."""
    update = trained - sent
    if attack.kind == "sign-flip":
        return sent - attack.factor * update
    if attack.kind == "scale":
        return sent + attack.factor * update
    if attack.kind == "gaussian-noise":
        rms = float(update.pow(2).mean().sqrt())
        noise = torch.randn(trained.shape, generator=generator, dtype=trained.dtype)
        return trained + attack.factor * rms * noise
    if attack.kind == "nan":
        return torch.full_like(trained, float("nan"))
    return trained
