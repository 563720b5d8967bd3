"""Personalisation keeps the fine-tuning epoch that is best on validation images."""

from pathlib import Path

import torch

from fedward.config import FedwardConfig
from fedward.learning.site import Site
from tests.conftest import WriteFolder, site_data


def test_personalisation_never_worsens_the_validation_figure(
    write_folder: WriteFolder, small_config: FedwardConfig, tmp_path: Path
) -> None:
    config = small_config.replace(personalize_epochs=3, learning_rate=0.05)
    root = write_folder("pers", per_class=10)
    site = Site("pers", site_data(root, config), config)
    torch.manual_seed(0)
    model = site.new_model()
    before = site._validation_score(model)

    kept = site.personalize(model)

    after = site._validation_score(model)
    assert 0 <= kept <= 3
    assert after >= before - 1e-9
    if kept == 0:  # nothing helped: the global model is kept as it was
        assert after == before
