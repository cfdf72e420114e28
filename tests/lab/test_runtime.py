"""Two runs in one process share nothing (issue 14): each run keeps its own SSH connections,
its own view of the inventory and its own cluster locks, so closing one leaves the other
working, and a second run of the same cluster in the same process is refused by the
lock like a run from another process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import lab
from kubebastion.check import check_host
from kubebastion.errors import RunLockedError
from kubebastion.runlock import cluster_lock
from kubebastion.runtime import Run, build_run, full_inventory
from kubebastion.ssh.connection import pool_of

pytestmark = pytest.mark.lab


def second_inventory(state: lab.LabState, folder: Path, cluster_name: str) -> Path:
    """A copy of the lab's inventory naming another cluster (same hosts, same logins)."""
    inventory = folder / "inventory"
    shutil.copytree(state.inventory_dir, inventory)
    defaults_file = inventory / "defaults.yaml"
    defaults = yaml.safe_load(defaults_file.read_text())
    defaults["data"]["cluster_name"] = cluster_name
    defaults_file.write_text(yaml.safe_dump(defaults))
    config = yaml.safe_load(Path(state.nornir_config).read_text())
    for key, name in (("host_file", "hosts.yaml"), ("group_file", "groups.yaml"),
                      ("defaults_file", "defaults.yaml")):
        config["inventory"]["options"][key] = str(inventory / name)
    config["logging"] = {"enabled": False}
    path = folder / "nornir_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def checked(run: Run) -> None:
    results = run.nornir.run(task=check_host, name="check")
    assert not results.failed, {h: m[0].exception for h, m in results.items()}


def test_closing_one_run_leaves_another_working(lab_env: lab.LabState,
                                                tmp_path: Path) -> None:
    with build_run(lab_env.nornir_config) as first, build_run(
            second_inventory(lab_env, tmp_path, "other")) as second:
        checked(first)
        checked(second)
        assert pool_of(first.nornir.config) is not pool_of(second.nornir.config)
        hosts = len(first.nornir.inventory.hosts)
        assert pool_of(second.nornir.config).open_count() == hosts  # one login per host
        first.close()
        assert pool_of(first.nornir.config).open_count() == 0
        assert pool_of(second.nornir.config).open_count() == hosts
        checked(second)  # over the same connections: the first run's close left them open


def test_a_filtered_copy_sees_its_own_runs_whole_inventory(lab_env: lab.LabState,
                                                           tmp_path: Path) -> None:
    with build_run(lab_env.nornir_config) as first, build_run(
            second_inventory(lab_env, tmp_path, "other")) as second:
        for run in (first, second):
            bastion_only = run.nornir.filter(name=run.cluster.bastion.name)
            assert full_inventory(bastion_only) is run.nornir.inventory


def test_a_second_run_of_the_cluster_in_this_process_is_refused_by_the_lock(
        lab_env: lab.LabState) -> None:
    with build_run(lab_env.nornir_config) as first, build_run(
            lab_env.nornir_config) as second:
        with cluster_lock(first, "first"):
            with cluster_lock(first, "nested"):  # the same run nests: no second lock
                pass
            with pytest.raises(RunLockedError, match="`first` run by"), \
                    cluster_lock(second, "second"):
                pass
        with cluster_lock(second, "second"):  # free again once the first let go
            pass
