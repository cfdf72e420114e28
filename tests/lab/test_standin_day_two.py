"""The stand-in's day-two playbooks run for real: scale, upgrade, remove a node, reset.

As tests/lab/test_standin_playbook.py (helpers.standin_bastion: the stand-in and a venv of
the real requirements on the bastion, ansible-playbook over SSH with host key checking on),
with kubespray v2.31.0's own top-level playbooks and, for remove-node.yml, its own play list
and roles. One cluster goes through the day-two sequence in file order: deployed at
v1.33.11 on k8s-m0 + k8s-w0; k8s-w1 added with facts.yml + scale.yml --limit; an upgrade
two minor versions up refused, one up done in serial batches; k8s-w1 removed, k8s-w0
removed offline; reset. Every refusal is the real playbook's, in its words.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import lab
from tests.lab.helpers import WORK, Bastion, recap, standin_bastion, write_inventory

pytestmark = pytest.mark.lab

INVENTORY = "daytwo"
OLD, MIDDLE, NEW = "1.33.11", "1.34.7", "1.35.4"  # inside v2.31.0's window 1.33.0-1.35.4
LAB_DIR = Path("etc-kubernetes") / "lab"  # /etc/kubernetes/lab, as the machine sees it


def first_cp(state: lab.LabState) -> lab.HostState:
    return next(h for h in state.nodes if h.role == "control_plane")


def kubectl(state: lab.LabState, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with admin.conf on the first control plane (where kubespray runs its own)."""
    return lab.host_exec(state, first_cp(state).name,
                         ["kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", *args],
                         timeout=60)


def node_rows(state: lab.LabState) -> dict[str, list[str]]:
    out = kubectl(state, "get", "nodes", "--no-headers")
    assert out.returncode == 0, out.stderr
    return {line.split()[0]: line.split() for line in out.stdout.splitlines()}


def server_version(state: lab.LabState) -> str:
    out = kubectl(state, "version", "-o", "json")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["serverVersion"]["gitVersion"])


def json_lines(state: lab.LabState, name: str) -> list[dict[str, Any]]:
    path = first_cp(state).host_dir / LAB_DIR / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def agent_pid(state: lab.LabState, node: str) -> int | None:
    path = state.host(node).host_dir / LAB_DIR / "agent.pid"
    return int(json.loads(path.read_text())["pid"]) if path.exists() else None


def set_workers(bastion: Bastion, workers: list[str]) -> None:
    """The lab inventory with only these workers (a new worker is appended, as kubespray
    wants it)."""
    write_inventory(bastion, INVENTORY)
    path = bastion.host_home / WORK / "kubespray" / "inventory" / INVENTORY / "hosts.yaml"
    inventory = yaml.safe_load(path.read_text())
    every = [h.name for h in bastion.state.nodes if h.role == "worker"]
    for name in set(every) - set(workers):
        del inventory["all"]["hosts"][name]
    inventory["all"]["children"]["kube_node"]["hosts"] = dict.fromkeys(workers)
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))


def set_kube_version(bastion: Bastion, version: str) -> None:
    """kube_version in the inventory, where every playbook reads it (scale.yml without it
    would install kubespray's default, 1.35.4, on the new nodes)."""
    path = (bastion.host_home / WORK / "kubespray" / "inventory" / INVENTORY / "group_vars"
            / "all" / "version.yml")
    path.write_text(yaml.safe_dump({"kube_version": version}))


def play(bastion: Bastion, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
    return bastion.playbook(playbook, *args, inventory=INVENTORY)


def failed_task(output: str, task: str) -> str:
    """The output of one task (from its TASK line to the next), which must be there."""
    marker = f"TASK [{task}"
    assert marker in output, output[-4000:]
    return output[output.index(marker):].split("\nTASK [", 1)[0]


@pytest.fixture(scope="module")
def bastion(lab_env: lab.LabState) -> Iterator[Bastion]:
    with standin_bastion(lab_env) as b:
        yield b


@pytest.fixture(scope="module")
def cluster(bastion: Bastion) -> lab.LabState:
    """k8s-m0 + k8s-w0 at v1.33.11, from scratch (whatever ran on the lab before)."""
    set_workers(bastion, ["k8s-w0"])
    set_kube_version(bastion, OLD)
    bastion.playbook("reset.yml", "-e", "reset_confirmation=yes")  # the full lab inventory
    result = play(bastion, "cluster.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    assert set(node_rows(bastion.state)) == {"k8s-m0", "k8s-w0"}
    return bastion.state


def test_remove_node_without_node_is_refused_as_kubespray_does(bastion: Bastion) -> None:
    set_workers(bastion, ["k8s-w0"])
    result = play(bastion, "remove-node.yml", "-e", "skip_confirmation=yes")
    assert result.returncode != 0
    out = failed_task(result.stdout, "Assert that nodes are specified for removal]")
    assert "No nodes specified for removal. The `node` variable must be set explicitly." in out
    assert set(recap(result.stdout)) == {"localhost"}  # no node was even contacted


def test_scale_with_limit_installs_only_the_new_worker(
        bastion: Bastion, cluster: lab.LabState) -> None:
    before = {n: agent_pid(cluster, n) for n in ("k8s-m0", "k8s-w0")}
    set_workers(bastion, ["k8s-w0", "k8s-w1"])
    facts = play(bastion, "playbooks/facts.yml")
    assert facts.returncode == 0, facts.stdout[-4000:]
    assert set(recap(facts.stdout)) == {"k8s-m0", "k8s-w0", "k8s-w1"}
    started = time.time()
    result = play(bastion, "scale.yml", "--limit=k8s-w1")
    assert result.returncode == 0, result.stdout[-4000:]
    assert set(recap(result.stdout)) == {"k8s-w1"}
    assert recap(result.stdout)["k8s-w1"]["changed"] > 0
    # registered and Ready when the playbook returns, at the cluster's version
    rows = node_rows(cluster)
    assert {n: r[1] for n, r in rows.items()} == dict.fromkeys(
        ("k8s-m0", "k8s-w0", "k8s-w1"), "Ready")
    assert rows["k8s-w1"][4] == f"v{OLD}"
    registered = [e for e in json_lines(cluster, "node-events.jsonl")
                  if e["event"] == "Registered" and e["time"] >= started]
    assert [e["node"] for e in registered] == ["k8s-w1"]
    assert {n: agent_pid(cluster, n) for n in before} == before  # the others untouched


def test_scale_again_changes_nothing(bastion: Bastion, cluster: lab.LabState) -> None:
    result = play(bastion, "scale.yml", "--limit=k8s-w1")
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap(result.stdout)["k8s-w1"]["changed"] == 0, result.stdout[-4000:]


def test_upgrade_outside_kubesprays_window_is_refused(
        bastion: Bastion, cluster: lab.LabState) -> None:
    result = play(bastion, "upgrade-cluster.yml", "-e", "kube_version=1.36.0")
    assert result.returncode != 0
    failed_task(result.stdout, "validate_inventory : Download_file | Check if requested "
                               "Kubernetes are supported")
    assert "PLAY [Handle upgrades to control plane" not in result.stdout
    assert server_version(cluster) == f"v{OLD}"


def test_upgrade_two_minor_versions_up_is_refused_by_kubeadms_policy(
        bastion: Bastion, cluster: lab.LabState) -> None:
    result = play(bastion, "upgrade-cluster.yml", "-e", f"kube_version={NEW}")
    assert result.returncode != 0
    out = failed_task(result.stdout, f"lab_cluster : Kubeadm | Upgrade first control plane "
                                     f"node to {NEW}]")
    assert "fatal: [k8s-m0]" in out
    assert (f'Specified version to upgrade to \\"v{NEW}\\" is too high; kubeadm can upgrade '
            "only 1 minor version at a time") in out
    assert server_version(cluster) == f"v{OLD}"
    assert {r[4] for r in node_rows(cluster).values()} == {f"v{OLD}"}
    assert json_lines(cluster, "upgrade-order.jsonl") == []
    # as with the real one, the first control plane stays cordoned (drained before kubeadm)
    assert node_rows(cluster)["k8s-m0"][1] == "Ready,SchedulingDisabled"
    assert kubectl(cluster, "uncordon", "k8s-m0").returncode == 0


@pytest.mark.timeout(900)
def test_upgrade_one_minor_version_in_serial_batches(
        bastion: Bastion, cluster: lab.LabState) -> None:
    started = time.monotonic()
    result = play(bastion, "upgrade-cluster.yml", "-e", f"kube_version={MIDDLE}",
                  "-e", "serial=2")
    print(f"upgrade of 3 nodes (serial=2): {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-4000:]
    set_kube_version(bastion, MIDDLE)  # as the operator then writes it down
    assert server_version(cluster) == f"v{MIDDLE}"
    rows = node_rows(cluster)
    assert {n: (r[1], r[4]) for n, r in rows.items()} == dict.fromkeys(
        ("k8s-m0", "k8s-w0", "k8s-w1"), ("Ready", f"v{MIDDLE}"))
    order = json_lines(cluster, "upgrade-order.jsonl")
    assert [(e["event"], e["node"]) for e in order[:2]] == [
        ("upgrading", "k8s-m0"), ("upgraded", "k8s-m0")]  # control planes first, alone
    assert {e["node"] for e in order[2:]} == {"k8s-w0", "k8s-w1"}
    assert all(sorted(e["batch"]) == ["k8s-w0", "k8s-w1"] for e in order[2:])  # one batch
    assert all(e["from"] == f"v{OLD}" and e["to"] == f"v{MIDDLE}" for e in order)
    # each node NotReady while its agent restarted, and only during its own batch
    events = [e for e in json_lines(cluster, "node-events.jsonl")
              if e["time"] >= order[0]["time"] - 1]
    went_down = {e["node"]: e["time"] for e in events if e["event"] == "NotReady"}
    back = {e["node"]: e["time"] for e in events
            if e["event"] == "Ready" and e.get("kubeletVersion") == f"v{MIDDLE}"}
    assert set(went_down) == set(back) == {"k8s-m0", "k8s-w0", "k8s-w1"}
    assert back["k8s-m0"] < min(went_down["k8s-w0"], went_down["k8s-w1"])
    assert all(went_down[n] < back[n] for n in went_down)


def test_remove_node_asks_for_confirmation(bastion: Bastion, cluster: lab.LabState) -> None:
    result = play(bastion, "remove-node.yml", "-e", "node=k8s-w1")  # stdin is not a terminal
    assert result.returncode != 0
    out = failed_task(result.stdout, "Fail if user does not confirm deletion]")
    assert "Delete nodes confirmation failed" in out
    assert node_rows(cluster)["k8s-w1"][1] == "Ready"


def test_remove_node_drains_resets_and_deletes_it(
        bastion: Bastion, cluster: lab.LabState) -> None:
    started = time.time()
    result = play(bastion, "remove-node.yml", "-e", "node=k8s-w1", "-e", "skip_confirmation=yes")
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap(result.stdout)["k8s-w1"]["changed"] > 0
    assert recap(result.stdout)["k8s-w0"]["changed"] == 0
    assert set(node_rows(cluster)) == {"k8s-m0", "k8s-w0"}
    events = [(e["node"], e["event"]) for e in json_lines(cluster, "node-events.jsonl")
              if e["time"] >= started]
    assert events == [("k8s-w1", "Cordoned"), ("k8s-w1", "Deleted")]
    assert not (cluster.host("k8s-w1").host_dir / LAB_DIR).exists()  # reset: agent gone
    time.sleep(3)  # more than a heartbeat: nothing registers it again
    assert "k8s-w1" not in node_rows(cluster)


def test_remove_offline_node_without_reset(bastion: Bastion, cluster: lab.LabState) -> None:
    """kubespray's docs: -e reset_nodes=false -e allow_ungraceful_removal=true for a node
    that is down (here: its agent dead and its link cut, so ansible cannot reach it)."""
    set_workers(bastion, ["k8s-w0"])
    stop = lab.host_exec(cluster, "k8s-w0", ["python3", "/etc/kubernetes/lab/labctl.py", "stop",
                                             "--pidfile", "/etc/kubernetes/lab/agent.pid"])
    assert stop.returncode == 0, stop.stderr
    lab.link_down(cluster, "k8s-w0")
    try:
        result = play(bastion, "remove-node.yml", "-e", "node=k8s-w0", "-e",
                      "skip_confirmation=yes", "-e", "reset_nodes=false",
                      "-e", "allow_ungraceful_removal=true")
    finally:
        lab.link_up(cluster, "k8s-w0")
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap(result.stdout)["k8s-w0"]["unreachable"] == 0
    assert set(node_rows(cluster)) == {"k8s-m0"}
    assert (cluster.host("k8s-w0").host_dir / LAB_DIR).exists()  # not reset: unreachable


def test_reset_needs_confirmation_then_takes_the_api_away(
        bastion: Bastion, cluster: lab.LabState) -> None:
    refused = play(bastion, "reset.yml", "-e", "reset_confirmation=no")
    assert refused.returncode != 0
    assert "Reset confirmation failed" in failed_task(refused.stdout, "Check confirmation]")
    assert server_version(cluster) == f"v{MIDDLE}"
    result = play(bastion, "reset.yml", "-e", "reset_confirmation=yes")
    assert result.returncode == 0, result.stdout[-4000:]
    cp = first_cp(cluster)
    assert not (cp.host_dir / LAB_DIR).exists()
    assert not (cp.host_dir / "etc-kubernetes" / "admin.conf").exists()
    probe = lab.exec_in(cluster.bastion.namespace, [
        "python3", "-c", "import socket,sys; s=socket.socket(); s.settimeout(5); "
        f"sys.exit(s.connect_ex(({cp.private_address!r}, 6443)))"])
    assert probe.returncode != 0, "something still listens on 6443"
