"""Differential privacy a hospital enforces: its policy, the accountant, the budget.

No Flower import. A hospital's ``site.toml`` and the run's config each may ask
for DP-SGD (:mod:`fedward.learning.dp_sgd`); the stricter of the two applies
(:func:`resolve_policy`): the larger noise, the smaller target ε, clipping norm
and δ. A hospital that requires DP, or keeps a finite lifetime budget, refuses a
run that is not private. Before each round the site plans the round's mechanism
(noise multiplier, Poisson sample rate, steps; :func:`plan_round`) and checks
its lifetime budget against its ledger (:func:`check_budget`); ε comes from
Opacus' RDP or PRV accountant over exactly those mechanisms, composed over every
round the ledger holds.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fedward.config import FedwardConfig, SiteConfig
from fedward.errors import PrivacyBudgetExceeded, PrivacyError
from fedward.learning.ledger import LedgerEntry


@dataclass(frozen=True)
class Mechanism:
    """``steps`` steps of the sampled Gaussian mechanism (DP-SGD)."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    @classmethod
    def of(cls, entry: LedgerEntry) -> Mechanism:
        """The mechanism a ledger entry records."""
        return cls(entry.noise_multiplier, entry.sample_rate, entry.steps)


def epsilon(history: Iterable[Mechanism], delta: float, accountant: str) -> float:
    """ε at ``delta`` of the composed ``history``, by Opacus' accountant.

    Parameters
    ----------
    history
        The mechanisms run, in any order.
    delta
        The δ of the (ε, δ) guarantee.
    accountant
        ``"rdp"`` or ``"prv"`` (Opacus' ``RDPAccountant`` / ``PRVAccountant``).
    """
    from opacus.accountants import create_accountant

    steps = [(m.noise_multiplier, m.sample_rate, m.steps) for m in history if m.steps]
    if not steps:
        return 0.0
    if any(sigma <= 0 for sigma, _, _ in steps):
        return math.inf
    account = create_accountant(mechanism=accountant)
    account.history = steps
    return float(account.get_epsilon(delta=delta))


@functools.lru_cache(maxsize=64)
def noise_for_target(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """The noise multiplier that spends ``target_epsilon`` in ``steps`` steps.

    Raises
    ------
    PrivacyError
        If no noise multiplier reaches the target (Opacus gives up).
    """
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # RDP's optimal order at the range's end
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
        return float(sigma)
    except ValueError as exc:
        raise PrivacyError(f"no noise reaches ε {target_epsilon:g}: {exc}") from None


@dataclass(frozen=True)
class PrivacyPolicy:
    """The DP settings a hospital applies to a run: the stricter of its and the run's.

    ``target_epsilon`` (per run) and ``noise_multiplier`` are 0 when unset;
    ``delta`` 0 means ``1 / (10 x units)``; ``budget`` 0 means no lifetime cap.
    """

    site: str
    target_epsilon: float
    noise_multiplier: float
    max_grad_norm: float
    delta: float
    accountant: str
    unit: str
    budget: float


def _smallest(*values: float) -> float:
    positive = [v for v in values if v > 0]
    return min(positive) if positive else 0.0


def resolve_policy(site: SiteConfig, run: FedwardConfig) -> PrivacyPolicy | None:
    """The policy for ``run`` at ``site``; ``None`` when the round is not private.

    Raises
    ------
    PrivacyError
        If the site requires DP (``dp = true``) or keeps a lifetime budget and
        the run does not use DP.
    """
    name = site.name
    if not run.dp:
        if site.dp:
            raise PrivacyError(
                f"hospital {name}: requires differential privacy (dp = true in its "
                "site.toml); this run does not use it (set dp = true in the run)"
            )
        if site.privacy_budget > 0:
            raise PrivacyError(
                f"hospital {name}: keeps a privacy budget of "
                f"{site.privacy_budget:g}; a run without differential privacy "
                "would spend it without bound"
            )
        return None
    return PrivacyPolicy(
        site=name,
        target_epsilon=_smallest(site.dp_target_epsilon, run.dp_target_epsilon),
        noise_multiplier=max(site.dp_noise_multiplier, run.dp_noise_multiplier),
        max_grad_norm=_smallest(site.dp_max_grad_norm, run.dp_max_grad_norm),
        delta=_smallest(site.dp_delta, run.dp_delta),
        accountant=site.dp_accountant,
        unit=site.privacy_unit,
        budget=site.privacy_budget,
    )


@dataclass(frozen=True)
class RoundPlan:
    """One round's private training, fixed before it starts."""

    mechanism: Mechanism
    delta: float
    max_grad_norm: float
    unit: str  # "patient" or "image"
    units: int  # patients (or images) that may be sampled
    batches_per_epoch: int


def plan_round(
    policy: PrivacyPolicy, run: FedwardConfig, units: int, unit: str
) -> RoundPlan:
    """Sample rate, steps and noise of one round of ``run`` over ``units`` units.

    As Opacus' Poisson loader does it: the sample rate is one over the number
    of batches of ``batch-size`` and an epoch is that many steps. A target ε
    is spread over every round of the run.

    Raises
    ------
    PrivacyError
        If there is nothing to train on, δ is not below ``1 / units``, or no
        noise reaches the target.
    """
    if units < 1:
        raise PrivacyError(f"hospital {policy.site}: no training images")
    batches = math.ceil(units / run.batch_size)
    sample_rate = 1 / batches
    steps = int(1 / sample_rate) * run.local_epochs  # Opacus' epoch length
    delta = policy.delta or 1 / (10 * units)
    if delta >= 1 / units:
        raise PrivacyError(
            f"hospital {policy.site}: dp-delta {delta:g} is not below 1/{units} "
            f"(one over the number of {unit}s); it would allow a leak"
        )
    sigma = policy.noise_multiplier
    if policy.target_epsilon > 0:
        needed = noise_for_target(
            policy.target_epsilon,
            delta,
            sample_rate,
            steps * run.num_server_rounds,
            policy.accountant,
        )
        sigma = max(sigma, needed)
    return RoundPlan(
        Mechanism(sigma, sample_rate, steps),
        delta,
        policy.max_grad_norm,
        unit,
        units,
        batches,
    )


@dataclass(frozen=True)
class Spend:
    """What a round spends: in this run, and over the site's lifetime."""

    run_epsilon: float
    lifetime_before: float
    lifetime_after: float
    lifetime_delta: float

    @property
    def round_epsilon(self) -> float:
        """What the round adds to the lifetime ε."""
        return self.lifetime_after - self.lifetime_before


def spend_of(
    plan: RoundPlan,
    policy: PrivacyPolicy,
    history: Sequence[LedgerEntry],
    run_id: str,
) -> Spend:
    """ε of this run and of the site's lifetime, before and after the round.

    The lifetime figure composes every ledger entry at the smallest δ any of
    them (or this round) used.
    """
    past = [Mechanism.of(e) for e in history]
    this_run = [Mechanism.of(e) for e in history if e.run == run_id]
    life_delta = min([plan.delta, *(e.delta for e in history)])
    acc = policy.accountant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about RDP's optimal order
        return Spend(
            run_epsilon=epsilon([*this_run, plan.mechanism], plan.delta, acc),
            lifetime_before=epsilon(past, life_delta, acc),
            lifetime_after=epsilon([*past, plan.mechanism], life_delta, acc),
            lifetime_delta=life_delta,
        )


def lifetime(history: Sequence[LedgerEntry], accountant: str) -> tuple[float, float]:
    """The site's lifetime (ε, δ): every ledger entry composed, at the smallest δ."""
    if not history:
        return 0.0, 0.0
    delta = min(e.delta for e in history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return epsilon([Mechanism.of(e) for e in history], delta, accountant), delta


def check_budget(policy: PrivacyPolicy, spend: Spend) -> None:
    """Refuse a round that would take the site over its lifetime budget.

    Raises
    ------
    PrivacyBudgetExceeded
        Naming the budget, what is spent and what the round needs.
    """
    if policy.budget > 0 and spend.lifetime_after > policy.budget:
        raise PrivacyBudgetExceeded(
            f"hospital {policy.site}: privacy budget {policy.budget:g} would be "
            f"exceeded (spent {spend.lifetime_before:.2f}, this round needs "
            f"{spend.round_epsilon:.2f})"
        )
