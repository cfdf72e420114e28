"""Nodes Ready, playbook not finished: the kubespray stand-in's apps phase fails on its own.

Real kubespray's nodes turn Ready long before "Install Kubernetes apps" (CoreDNS and
friends) runs; a run that fails there leaves a cluster whose API lists every node Ready
and which has no DNS. The stand-in reproduces it with ``lab_fail_apps: true``. Then the next
``invoke deploy`` (same inventory) must run the playbook again, not skip it because the
nodes look healthy (issue 12 item 2).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lab
from tests.lab.helpers import INVOKE, REPO, Invocation, invoke_kubespray, write_config

pytestmark = pytest.mark.lab
APPS_TASK = "lab_cluster : lab: injected apps failure"
APPS_FILE = "/etc/kubernetes/lab/apps.json"


@pytest.fixture(scope="module")
def config(lab_env: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(lab_env, tmp_path_factory.mktemp("apps-config"),
                        kubespray_vars={"lab_fail_apps": True})


@pytest.fixture(scope="module")
def failed(lab_env: lab.LabState, config: Path) -> Invocation:
    """A run whose apps phase fails (``--force``: an earlier module may have deployed)."""
    cp = next(n.name for n in lab_env.nodes if n.role == "control_plane")
    lab.host_exec(lab_env, cp, ["rm", "-f", APPS_FILE], check=True)
    return invoke_kubespray(config, "--force")


@pytest.fixture(scope="module")
def rerun(lab_env: lab.LabState, failed: Invocation, config: Path
          ) -> Iterator[tuple[int, dict[str, Any]]]:
    """The next ``invoke deploy`` with the same inventory (NAT undone afterwards)."""
    try:
        proc = subprocess.run([INVOKE, "deploy", "--config", str(config), "--json"], cwd=REPO,
                              env=dict(os.environ), capture_output=True, text=True,
                              timeout=900, check=False)
    finally:
        lab.reset_bastion_egress(lab_env)  # the lab's starting point, for later modules
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON from invoke deploy (exit {proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}")
    yield proc.returncode, report


def test_apps_phase_fails_after_every_node_is_ready(lab_env: lab.LabState,
                                                    failed: Invocation) -> None:
    assert failed.code == 1, failed.stderr[-2000:]
    playbook_row, = failed.rows("playbook")
    assert playbook_row["status"] == "failed"
    assert APPS_TASK in playbook_row["detail"]
    playbook = failed.document["playbook"]
    cp = next(n.name for n in lab_env.nodes if n.role == "control_plane")
    assert playbook["recap"][cp]["failed"] == 1 and playbook["failed_hosts"] == [cp]
    failure, = playbook["failures"]
    assert failure["play"] == "Install Kubernetes apps" and failure["task"] == APPS_TASK
    # The API (on the control plane, with admin.conf) reports every node Ready ...
    nodes = lab.host_exec(lab_env, cp, ["kubectl", "--kubeconfig=/etc/kubernetes/admin.conf",
                                        "get", "nodes", "--no-headers"], timeout=60)
    assert nodes.returncode == 0, nodes.stderr
    status = {line.split()[0]: line.split()[1] for line in nodes.stdout.splitlines()}
    assert status == {n.name: "Ready" for n in lab_env.nodes}
    # ... yet the apps were never installed.
    assert lab.host_exec(lab_env, cp, ["test", "-e", APPS_FILE]).returncode == 1


def test_the_next_deploy_runs_the_playbook_again(rerun: tuple[int, dict[str, Any]]) -> None:
    """Not skipped as "healthy": the last run failed, so it runs again (and, lab_fail_apps
    still set, fails again at the same task)."""
    code, report = rerun
    step = next(s for s in report["steps"] if s["name"] == "kubespray")
    playbook_rows = [h for h in step["hosts"] if h["data"].get("part") == "playbook"]
    print(f"next deploy: exit {code}, kubespray {step['status']}: "
          f"{[h['detail'] for h in playbook_rows]}")
    assert "playbook" in step.get("extra", {}), step["hosts"]
    failure, = step["extra"]["playbook"]["failures"]
    assert failure["task"] == APPS_TASK
    assert code == 1 and step["status"] == "failed"
    after = report["steps"][[s["name"] for s in report["steps"]].index("kubespray") + 1:]
    assert after and all(s["status"] == "skipped" for s in after)  # not run after a failure
