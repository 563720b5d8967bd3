from pathlib import Path

import numpy as np
import pytest

from fedward.config import FedwardConfig
from fedward.data.partition import simulated_site
from fedward.data.splits import dirichlet_partition, iid_partition
from fedward.errors import ConfigError
from tests.conftest import WriteFolder


def test_iid_partition_covers_every_index_once() -> None:
    parts = iid_partition(np.zeros(101), 4, seed=0)

    joined = np.sort(np.concatenate(parts))
    assert joined.tolist() == list(range(101))
    assert {len(p) for p in parts} <= {25, 26}


def test_dirichlet_partition_skews_labels_and_leaves_no_site_empty() -> None:
    labels = np.repeat([0, 1], 200)

    parts = dirichlet_partition(labels, 5, alpha=0.1, seed=0)

    assert sorted(np.concatenate(parts).tolist()) == list(range(400))
    assert all(len(p) > 0 for p in parts)
    shares = [labels[p].mean() for p in parts if len(p) > 10]
    assert max(shares) - min(shares) > 0.5


def test_by_folder_sites_follow_hospital_folders(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    write_folder("hospitals/alpha", per_class=5)
    write_folder("hospitals/beta", per_class=3)
    config = FedwardConfig(data_root=str(tmp_path / "hospitals"), image_size=24)

    name, splits = simulated_site(config, 1, 2)

    assert name == "beta"
    assert len(splits.train) + len(splits.val) + len(splits.test) == 6


def test_site_count_must_match_the_folders(
    write_folder: WriteFolder, tmp_path: Path
) -> None:
    write_folder("h/alpha")
    config = FedwardConfig(data_root=str(tmp_path / "h"), image_size=24)

    with pytest.raises(ConfigError, match="1 hospital folders"):
        simulated_site(config, 0, 3)


def test_pooled_folders_are_dealt_to_sites(write_folder: WriteFolder) -> None:
    root = write_folder("pool", per_class=10)
    config = FedwardConfig(data_root=str(root), image_size=24, partition="iid")

    sizes = []
    for i in range(2):
        name, s = simulated_site(config, i, 2)
        assert name == f"hospital-{i + 1}"
        sizes.append(len(s.train) + len(s.val) + len(s.test))

    assert sizes == [10, 10]


def test_a_simulated_hospital_without_data_says_how_to_get_some(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the ClientApp does not carry the demo generator (it is not part of the
    # approved app); fedward simulate writes the demo and names it in data-root
    monkeypatch.chdir(tmp_path)
    config = FedwardConfig(image_size=24, num_hospitals=3)

    with pytest.raises(ConfigError, match="fedward data demo"):
        simulated_site(config, 1, 2)

    assert not (tmp_path / "demo-data").exists()
