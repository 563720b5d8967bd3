import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from fedward.config import FedwardConfig, SiteConfig
from fedward.data.datasets import DecodedImages, SiteSplits
from fedward.errors import PrivacyBudgetExceeded, PrivacyError
from fedward.learning.ledger import PrivacyLedger
from fedward.learning.privacy import (
    Mechanism,
    epsilon,
    lifetime,
    plan_round,
    resolve_policy,
)
from fedward.learning.private_site import PrivateTraining, private_training
from fedward.learning.site import Site

ROOT = Path(__file__).resolve().parents[2]


def tiny_site(n: int = 8, **run: object) -> Site:
    """``n`` random 32 px training images (and a few held out), seeded."""
    gen = torch.Generator().manual_seed(0)

    def images(k: int) -> DecodedImages:
        pixels = torch.randint(0, 255, (k, 3, 32, 32), dtype=torch.uint8, generator=gen)
        labels = torch.arange(k) % 2
        return DecodedImages(pixels, labels, [f"img-{i}" for i in range(k)])

    values = {
        "image-size": 32,
        "batch-size": 4,
        "local-epochs": 1,
        "num-server-rounds": 3,
        "augment": False,
        "dp": True,
        "dp-noise-multiplier": 1.0,
        **run,
    }
    config = FedwardConfig.from_mapping(values)
    return Site("general", SiteSplits(images(n), images(2), images(2)), config)


def site_settings(tmp_path: Path, **keys: object) -> SiteConfig:
    ledger = str(tmp_path / "general-privacy-ledger.jsonl")
    values = {"site-name": "general", "data-path": ".", "privacy-ledger": ledger}
    return SiteConfig.from_mapping(values | keys)


def private(tmp_path: Path, site: Site, **keys: object) -> PrivateTraining:
    training = private_training(site_settings(tmp_path, **keys), site.name, site.config)
    assert training is not None
    return training


def opacus_epsilon(steps: list[tuple[float, float, int]], delta: float) -> float:
    """What a fresh Opacus accountant says after stepping through ``steps``."""
    accountant = RDPAccountant()
    for sigma, rate, count in steps:
        for _ in range(count):
            accountant.step(noise_multiplier=sigma, sample_rate=rate)
    return float(accountant.get_epsilon(delta=delta))


def test_reported_epsilon_equals_opacus_accountant(tmp_path: Path) -> None:
    site = tiny_site()
    training = private(tmp_path, site)

    _, first = training.fit(site, site.new_model(), 1, "run-a")
    _, second = training.fit(site, site.new_model(), 2, "run-a")

    # 8 images, batch 4: sample rate 1/2, two steps per epoch, noise 1.0
    assert (first.noise_multiplier, first.sample_rate, first.steps) == (1.0, 0.5, 2)
    assert first.delta == pytest.approx(1 / 80)  # 1 / (10 x training images)
    assert first.run_epsilon == opacus_epsilon([(1.0, 0.5, 2)], first.delta)
    assert second.run_epsilon == opacus_epsilon([(1.0, 0.5, 4)], first.delta)
    assert second.epsilon == pytest.approx(second.run_epsilon - first.run_epsilon)
    assert second.run_epsilon > first.run_epsilon > 0


def test_prv_accountant_matches_opacus_too() -> None:
    history = [Mechanism(0.9, 0.1, 30), Mechanism(1.2, 0.05, 50)]
    accountant = PRVAccountant()
    for m in history:
        for _ in range(m.steps):
            accountant.step(
                noise_multiplier=m.noise_multiplier, sample_rate=m.sample_rate
            )

    ours = epsilon(history, 1e-5, "prv")

    assert ours == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=1e-9)
    assert ours < epsilon(history, 1e-5, "rdp")  # PRV is the tighter bound


def test_a_round_over_budget_is_refused_before_training(tmp_path: Path) -> None:
    site = tiny_site()
    two_rounds = opacus_epsilon([(1.0, 0.5, 4)], 1 / 80)
    budget = round((two_rounds + opacus_epsilon([(1.0, 0.5, 6)], 1 / 80)) / 2, 2)
    training = private(tmp_path, site, **{"privacy-budget": budget})
    training.fit(site, site.new_model(), 1, "run-a")
    training.fit(site, site.new_model(), 2, "run-a")
    model = site.new_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    with pytest.raises(PrivacyBudgetExceeded) as refused:
        training.fit(site, model, 3, "run-a")

    assert refused.value.problems[0].startswith(
        f"hospital general: privacy budget {budget:g} would be exceeded "
        f"(spent {two_rounds:.2f}, this round needs "
    )
    assert len(training.ledger.entries()) == 2  # the refused round is not written
    after = model.state_dict()
    assert all(torch.equal(before[k], v) for k, v in after.items())  # not trained


def test_the_budget_counts_every_earlier_run(tmp_path: Path) -> None:
    site = tiny_site()
    private(tmp_path, site).fit(site, site.new_model(), 1, "run-a")
    spent, _ = lifetime(
        PrivacyLedger(tmp_path / "general-privacy-ledger.jsonl").entries(), "rdp"
    )

    _, entry = private(tmp_path, site).fit(site, site.new_model(), 1, "run-b")

    assert entry.run_epsilon == pytest.approx(spent)  # same mechanism, new run
    assert entry.lifetime_epsilon == opacus_epsilon([(1.0, 0.5, 4)], entry.delta)
    assert entry.lifetime_epsilon > entry.run_epsilon


def test_a_hospital_requiring_dp_refuses_a_non_dp_run(tmp_path: Path) -> None:
    run = FedwardConfig()  # dp off

    with pytest.raises(PrivacyError, match="hospital general: requires differential"):
        resolve_policy(site_settings(tmp_path, dp=True), run)
    with pytest.raises(PrivacyError, match="keeps a privacy budget of 8"):
        resolve_policy(site_settings(tmp_path, **{"privacy-budget": 8.0}), run)
    assert resolve_policy(site_settings(tmp_path), run) is None


def test_the_stricter_of_site_and_run_applies(tmp_path: Path) -> None:
    run = FedwardConfig(
        dp=True, dp_target_epsilon=8.0, dp_noise_multiplier=0.8, dp_max_grad_norm=2.0
    )
    site = site_settings(
        tmp_path,
        **{
            "dp-target-epsilon": 3.0,
            "dp-noise-multiplier": 0.5,
            "dp-max-grad-norm": 1.5,
            "dp-delta": 1e-6,
        },
    )

    policy = resolve_policy(site, run)

    assert policy is not None
    assert (policy.target_epsilon, policy.noise_multiplier) == (3.0, 0.8)
    assert (policy.max_grad_norm, policy.delta) == (1.5, 1e-6)
    plan = plan_round(policy, run, units=200, unit="image")
    whole_run = epsilon([plan.mechanism] * run.num_server_rounds, 1e-6, "rdp")
    assert plan.mechanism.noise_multiplier > 0.8  # the target needs more noise
    assert 2.9 < whole_run <= 3.0


def test_delta_must_be_below_one_over_the_units(tmp_path: Path) -> None:
    run = FedwardConfig(dp=True, dp_noise_multiplier=1.0)
    policy = resolve_policy(site_settings(tmp_path, **{"dp-delta": 0.05}), run)
    assert policy is not None

    with pytest.raises(PrivacyError, match=r"dp-delta 0\.05 is not below 1/40"):
        plan_round(policy, run, units=40, unit="patient")
    assert plan_round(policy, run, units=10, unit="image").delta == 0.05


@pytest.mark.integration
def test_the_ledger_survives_a_killed_daemon_and_a_new_run(tmp_path: Path) -> None:
    script = tmp_path / "hospital.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(ROOT)!r})
            from pathlib import Path
            from tests.learning.test_privacy import tiny_site, private
            site = tiny_site()
            training = private(Path({str(tmp_path)!r}), site)
            training.fit(site, site.new_model(), 1, "run-a")
            print("round 1 sent", flush=True)
            time.sleep(600)  # waiting for round 2 when the daemon is killed
            """
        )
    )
    daemon = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline().strip() == "round 1 sent"
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=60)
    site = tiny_site()
    one_round = opacus_epsilon([(1.0, 0.5, 2)], 1 / 80)

    with pytest.raises(PrivacyBudgetExceeded, match=f"spent {one_round:.2f}"):
        private(tmp_path, site, **{"privacy-budget": one_round * 1.2}).fit(
            site, site.new_model(), 1, "run-b"
        )
    _, entry = private(tmp_path, site).fit(site, site.new_model(), 1, "run-b")

    assert [
        e.run
        for e in PrivacyLedger(tmp_path / "general-privacy-ledger.jsonl").entries()
    ] == ["run-a", "run-b"]
    assert entry.lifetime_epsilon == opacus_epsilon([(1.0, 0.5, 4)], 1 / 80)
    assert math.isclose(entry.run_epsilon, one_round)
