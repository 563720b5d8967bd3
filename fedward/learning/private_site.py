"""A hospital's private round: policy, budget check, DP-SGD, ledger entry.

No Flower import; the ClientApp calls :func:`private_training` and
:meth:`PrivateTraining.fit` and turns a :class:`~fedward.errors.PrivacyError`
into an error reply. The order is the guarantee: the ledger is checked and the
budget tested before training, and the round's entry is fsynced before the
weights are handed back to be sent.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from torch import nn

from fedward.config import FedwardConfig, SiteConfig
from fedward.console import ProgressBar
from fedward.data.patients import patient_groups
from fedward.errors import PrivacyError, PrivacyLedgerError
from fedward.learning.dp_sgd import PrivacyUnits, train_dp_sgd
from fedward.learning.federated import round_learning_rate
from fedward.learning.ledger import LedgerEntry, PrivacyLedger
from fedward.learning.loops import TrainResult, seed_everything, select_device
from fedward.learning.privacy import (
    PrivacyPolicy,
    check_budget,
    plan_round,
    resolve_policy,
    spend_of,
)
from fedward.learning.site import Site, epoch_message
from fedward.runfolder import RunFolder

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _patients(paths: tuple[str, ...]) -> tuple[str, ...] | None:
    groups = patient_groups(paths)
    return tuple(groups) if groups is not None else None


def simulated_site_config(name: str, run: FedwardConfig) -> SiteConfig:
    """A simulated hospital's privacy settings, its ledger in the run folder."""
    ledger = RunFolder(run.run_dir).privacy_ledger(name)
    values = {
        **run.simulated_site(name),
        "site-name": name,
        "data-path": run.data_root or ".",
        "privacy-ledger": str(ledger),
    }
    return SiteConfig.from_mapping(values)


@dataclass(frozen=True)
class PrivateTraining:
    """DP-SGD at one hospital under its policy, accounted in its ledger."""

    policy: PrivacyPolicy
    ledger: PrivacyLedger

    def units(self, site: Site) -> PrivacyUnits:
        """The training set as privacy units: patients if known (and allowed).

        Raises
        ------
        PrivacyError
            If the site asks for patient-level privacy and an image names no
            patient.
        """
        train = site.data.train
        groups = None
        if self.policy.unit != "image":
            groups = _patients(tuple(train.paths))
            if groups is None and self.policy.unit == "patient":
                raise PrivacyError(
                    f"hospital {self.policy.site}: privacy-unit is 'patient' but "
                    "not every training image names its patient (DICOM PatientID)"
                )
        return PrivacyUnits(train, site.transform(training=True), groups)

    def fit(
        self,
        site: Site,
        model: nn.Module,
        server_round: int,
        run_id: str,
        *,
        proximal_mu: float = 0.0,
    ) -> tuple[TrainResult, LedgerEntry]:
        """Check the budget, train privately, write the ledger; in that order.

        The learning rate follows ``lr-schedule`` and ``proximal_mu`` adds
        FedProx's term, as in :meth:`Site.fit`.

        Raises
        ------
        PrivacyBudgetExceeded
            If the round would take the site over its lifetime budget.
        PrivacyLedgerError
            If the ledger is damaged or cannot be written.
        PrivacyError
            If the round cannot be private as configured.
        """
        cfg = site.config
        history = self.ledger.entries()
        seed = cfg.seed + 1000 * server_round
        units = self.units(site)
        plan = plan_round(self.policy, cfg, len(units), units.unit)
        spend = spend_of(plan, self.policy, history, run_id)
        check_budget(self.policy, spend)
        rate = round_learning_rate(
            cfg.learning_rate, cfg.lr_schedule, server_round, cfg.num_server_rounds
        )
        seed_everything(seed)
        with ProgressBar(f"{site.name} epoch", cfg.local_epochs) as bar:
            result, _ = train_dp_sgd(
                model,
                units,
                plan,
                epochs=cfg.local_epochs,
                batch_size=cfg.batch_size,
                learning_rate=rate,
                device=select_device(cfg.device),
                accountant=self.policy.accountant,
                on_epoch=lambda s: bar.step(epoch_message(s)),
                proximal_mu=proximal_mu,
            )
        model.to("cpu")
        entry = self.ledger.append(
            LedgerEntry(
                site=site.name,
                run=run_id,
                round=server_round,
                epsilon=spend.round_epsilon,
                run_epsilon=spend.run_epsilon,
                lifetime_epsilon=spend.lifetime_after,
                delta=plan.delta,
                lifetime_delta=spend.lifetime_delta,
                noise_multiplier=plan.mechanism.noise_multiplier,
                max_grad_norm=plan.max_grad_norm,
                steps=plan.mechanism.steps,
                sample_rate=plan.mechanism.sample_rate,
                unit=plan.unit,
                units=plan.units,
                accountant=self.policy.accountant,
            )
        )
        logger.info(
            "%s: round %d private (ε %.2f this run, δ %.1e, per %s; lifetime ε %.2f)",
            site.name,
            server_round,
            spend.run_epsilon,
            plan.delta,
            plan.unit,
            spend.lifetime_after,
        )
        return result, entry


def private_training(
    site: SiteConfig | None, name: str, run: FedwardConfig
) -> PrivateTraining | None:
    """The hospital's private training for ``run``; ``None`` if not private.

    ``site`` is the hospital's own config, or ``None`` for a simulated one
    (whose settings come from the run's ``simulated-sites``).

    Raises
    ------
    PrivacyError
        If the hospital refuses the run (it requires DP, or keeps a budget).
    PrivacyLedgerError
        If the hospital has nowhere to keep its ledger.
    """
    site = site if site is not None else simulated_site_config(name, run)
    policy = resolve_policy(site, run)
    if policy is None:
        return None
    path = site.ledger_path
    if path is None:
        raise PrivacyLedgerError(
            f"hospital {name}: nowhere to keep a privacy ledger; set privacy-ledger "
            "in its site.toml"
        )
    return PrivateTraining(policy, PrivacyLedger(path))
