"""examples/: kubebastion's tasks imported into someone else's Nornir run, for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import lab
from tests.lab.helpers import REPO, invoke_kubespray, write_config

pytestmark = pytest.mark.lab


def test_own_nornir_run_uses_configure_nat_and_fetch_kubeconfig(
        lab_env: lab.LabState, tmp_path: Path) -> None:
    config = write_config(lab_env, tmp_path)
    assert invoke_kubespray(config).code == 0
    script = REPO / "examples" / "nat_and_kubeconfig.py"
    # The example's InitNornir resolves the inventory paths from the current folder.
    first = subprocess.run([sys.executable, str(script), str(config), "example"],
                           cwd=config.parent, capture_output=True, text=True, timeout=300,
                           check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "nat: " in first.stdout and "fetch-kubeconfig: " in first.stdout
    kubeconfig = lab.host_exec(lab_env, "bastion",
                               ["cat", f"/home/{lab_env.user}/.kube/config"]).stdout
    assert "example" in {c["name"] for c in yaml.safe_load(kubeconfig)["contexts"]}
    try:
        second = subprocess.run([sys.executable, str(script), str(config), "example"],
                                cwd=config.parent, capture_output=True, text=True,
                                timeout=300, check=False)
    finally:
        lab.reset_bastion_egress(lab_env)  # the lab's starting point, for later modules
    assert second.returncode == 0
    assert second.stdout.splitlines() == ["nat: no change", "fetch-kubeconfig: no change"]
