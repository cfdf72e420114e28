"""examples/: kubebastion's tasks imported into someone else's Nornir run, for real."""

from __future__ import annotations

import subprocess
import sys
import time
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
    assert ready_nodes(first.stdout) == sorted(n.name for n in lab_env.nodes)
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
    assert second.stdout.splitlines()[:2] == ["nat: no change", "fetch-kubeconfig: no change"]
    assert ready_nodes(second.stdout) == sorted(n.name for n in lab_env.nodes)


def ready_nodes(stdout: str) -> list[str]:
    """The example's ``ready: a, b`` line (its last), as a sorted list."""
    last = stdout.splitlines()[-1]
    assert last.startswith("ready: "), stdout
    return sorted(last.removeprefix("ready: ").split(", "))


def node_status(state: lab.LabState, node: str) -> str:
    """kubectl's STATUS of ``node``, asked on the first control plane."""
    cp = next(n.name for n in state.nodes if n.role == "control_plane")
    listed = lab.host_exec(state, cp, ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf",
                                       "get", "node", node, "--no-headers"], timeout=60)
    return listed.stdout.split()[1] if listed.stdout.split()[1:] else listed.stderr


def wait_for_status(state: lab.LabState, node: str, wanted: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (status := node_status(state, node)) != wanted:
        assert time.monotonic() < deadline, f"{node} never turned {wanted} ({status})"
        time.sleep(1)


def test_own_nornir_run_fails_when_a_node_is_not_ready(lab_env: lab.LabState,
                                                       tmp_path: Path) -> None:
    """The Ready check is part of fetch_kubeconfig: a worker whose kubelet stand-in stops
    sending heartbeats (SIGSTOP, resumed after) fails the example's run by name."""
    config = write_config(lab_env, tmp_path)
    assert invoke_kubespray(config).code == 0
    worker = next(n for n in lab_env.nodes if n.role == "worker")
    pid = lab.host_exec(lab_env, worker.name, [
        "python3", "-c", "import json; print(json.load(open("
        "'/etc/kubernetes/lab/agent.pid'))['pid'])"], check=True).stdout.strip()
    script = REPO / "examples" / "nat_and_kubeconfig.py"
    lab.host_exec(lab_env, worker.name, ["kill", "-STOP", pid], check=True)
    try:
        wait_for_status(lab_env, worker.name, "NotReady", 60)  # the API's grace runs out
        done = subprocess.run([sys.executable, str(script), str(config), "example", "5"],
                              cwd=config.parent, capture_output=True, text=True,
                              timeout=300, check=False)
    finally:
        lab.host_exec(lab_env, worker.name, ["kill", "-CONT", pid], check=True)
        lab.reset_bastion_egress(lab_env)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = done.stdout.splitlines()[-1]
    assert failed.startswith("fetch-kubeconfig: failed: nodes not Ready after 5 s"), failed
    assert f"not Ready: {worker.name}" in failed and "ready: " not in done.stdout
    wait_for_status(lab_env, worker.name, "Ready", 60)  # heartbeats again
