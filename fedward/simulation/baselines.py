"""Baselines beside a federation: each hospital alone, and all data pooled.

Both get the federation's training budget (rounds x local epochs over their own
training images) and are evaluated on the same held-out splits the federation
was evaluated on, so the figures compare like with like. No Flower import.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from fedward.config import FedwardConfig
from fedward.data.datasets import DecodedImages, SiteSplits
from fedward.data.harmonize import site_landmarks, standard_scale
from fedward.data.partition import simulated_site
from fedward.learning.loops import seed_everything
from fedward.learning.site import Site
from fedward.metrics.counts import EvalCounts, pool
from fedward.runfolder import RunFolder

logger = logging.getLogger(__name__)


def _concat(parts: list[DecodedImages]) -> DecodedImages:
    return DecodedImages(
        torch.cat([p.images for p in parts]),
        torch.cat([p.labels for p in parts]),
        [path for p in parts for path in p.paths],
    )


def pooled_site(sites: list[Site], config: FedwardConfig) -> Site:
    """One site holding every hospital's images, split as the hospitals split them."""
    splits = SiteSplits(
        *(
            _concat([s.data.get(name) for s in sites])
            for name in ("train", "val", "test")
        )
    )
    return Site("pooled", splits, config)


def _trained(site: Site, epochs: int) -> torch.nn.Module:
    site = dataclasses.replace(site, config=site.config.replace(local_epochs=epochs))
    seed_everything(site.config.seed)  # the federation's initial weights
    model = site.new_model()
    site.fit(model, server_round=0)
    return model


def harmonize_scale(config: FedwardConfig, sites: list[Site]) -> list[float]:
    """The federation's harmonisation scale (``harmonize``), for the baselines.

    Formed as the server forms it, from each site's mean landmarks, so the
    baselines map their images onto the same scale as the federation did.
    """
    if config.harmonize == "none":
        return []
    return standard_scale([site_landmarks(s.data.train.images) for s in sites])


def run_baselines(config: FedwardConfig) -> dict[str, Any]:
    """Train and evaluate local-only and pooled models; return their figures.

    Returns
    -------
    dict
        ``{"budget-epochs", "local-only": {"global", "sites"}, "pooled": {...}}``,
        the global figures from summed confusion matrices as for the federation.
    """
    sites = [
        Site(*simulated_site(config, i, config.num_hospitals), config)
        for i in range(config.num_hospitals)
    ]
    scale = harmonize_scale(config, sites)
    sites = [site.harmonized(scale) for site in sites]
    epochs = config.num_server_rounds * config.local_epochs
    split, classes = config.eval_split, config.classes
    local: dict[str, EvalCounts] = {}
    for site in sites:
        logger.info("baseline: %s alone, %d epochs", site.name, epochs)
        local[site.name] = site.evaluate(_trained(site, epochs), split)
    logger.info("baseline: all data pooled, %d epochs", epochs)
    pooled_model = _trained(pooled_site(sites, config), epochs)
    pooled = {s.name: s.evaluate(pooled_model, split) for s in sites}
    out: dict[str, Any] = {"budget-epochs": epochs, "eval-split": split}
    for name, results in (("local-only", local), ("pooled", pooled)):
        out[name] = {
            "global": pool(results.values()).figures(classes),
            "sites": {site: r.figures(classes) for site, r in results.items()},
            "counts": {
                "global": pool(results.values()).to_json(),
                **{site: r.to_json() for site, r in results.items()},
            },
        }
    return out


def compare(summary: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    """Per hospital: federated minus local-only, and federated / pooled."""
    final = summary["final"]

    def pick(block: dict[str, Any], name: str) -> dict[str, float]:
        figures: dict[str, float] = (
            block["global"] if name == "global" else block["sites"][name]
        )
        return figures

    rows: dict[str, Any] = {}
    for name in ["global", *sorted(final["sites"])]:
        fed = pick(final, name)
        local = pick(baselines["local-only"], name)
        pooled = pick(baselines["pooled"], name)
        rows[name] = {
            metric: {
                "local-only": local[metric],
                "federated": fed[metric],
                "pooled": pooled[metric],
                "gain-over-local": fed[metric] - local[metric],
                "federated/pooled": fed[metric] / pooled[metric]
                if pooled[metric]
                else None,
            }
            for metric in ("accuracy", "recall", "f1", "auroc")
        }
    return rows


def write_baselines(
    folder: RunFolder, baselines: dict[str, Any], rows: dict[str, Any]
) -> None:
    """Store baselines and the comparison in the run folder."""
    folder.write_json(RunFolder.BASELINES, {**baselines, "comparison": rows})
