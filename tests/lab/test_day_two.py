"""Day two on the lab, for real (issue 15's "Done when"): a cluster of 1 control plane + 2
workers; a worker added to the inventory is added alone; a worker removed; the first
control plane's removal refused; Kubernetes upgraded one minor version, node by node; two
minors refused; reset refused without confirmation and done with it.

The module builds a lab of its own (prefix ``<lab prefix>2``, 3 workers, of which k8s-w2
is left out of the inventory until the "add" test) and takes it down at the end. Tests
run in file order and build on each other.
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
from kubebastion.api import ClusterHealth
from kubebastion.kubeconfig.verify import cluster_health
from kubebastion.runtime import build_run
from lab.lock import held, session_lock
from tests.lab.conftest import LOCK_WAIT, PREFIX
from tests.lab.helpers import INVOKE, REPO, as_user, invoke_env, write_config
from tests.labgate import require_lab

pytestmark = pytest.mark.lab

OWN_PREFIX = f"{PREFIX}2"
PARAMS: dict[str, Any] = {"name_prefix": OWN_PREFIX, "control_planes": 1, "workers": 3,
                          "user": f"{OWN_PREFIX}lab",
                          "state_dir": lab.DEFAULT_STATE_DIR / f"pytest-{OWN_PREFIX}"}
SPARE = "k8s-w2"
FROM_VERSION, TO_VERSION = "1.34.7", "1.35.4"
#: Another cluster's context on the bastion: reset must leave it byte for byte.
OTHER_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- cluster:
    server: https://198.18.0.200:6443
  name: other
contexts:
- context:
    cluster: other
    user: other
  name: other
current-context: other
users:
- name: other
  user:
    token: not-a-real-token
"""


def invoke(config: Path, *args: str, timeout: float = 900,
           stdin: str | None = None) -> tuple[int, dict[str, Any], str]:
    """``invoke TASK ... --json`` as a user would run it; (exit code, JSON or {}, stderr)."""
    proc = subprocess.run([INVOKE, args[0], "--config", str(config), *args[1:]], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          input=stdin if stdin is not None else "",
                          env=invoke_env(columns=False))
    try:
        document = json.loads(proc.stdout) if "--json" in args else {}
    except ValueError:
        pytest.fail(f"no JSON from invoke {args[0]} (exit {proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}")
    return proc.returncode, document, proc.stderr


def health(config: Path) -> ClusterHealth:
    run = build_run(config)
    try:
        return cluster_health(run.nornir, run.cluster)
    finally:
        run.close()


def set_hosts(config: Path, state: lab.LabState, without: list[str]) -> None:
    """The inventory's hosts.yaml: the lab's, minus ``without``."""
    hosts = yaml.safe_load((state.inventory_dir / "hosts.yaml").read_text())
    for name in without:
        hosts.pop(name)
    (config.parent / "inventory" / "hosts.yaml").write_text(yaml.safe_dump(hosts))


def set_kube_version(config: Path, version: str) -> None:
    path = config.parent / "inventory" / "defaults.yaml"
    defaults = yaml.safe_load(path.read_text())
    defaults["data"]["kubespray_vars"] = {"kube_version": version}
    path.write_text(yaml.safe_dump(defaults))


def cluster_name(config: Path) -> str:
    run = build_run(config)
    try:
        return run.cluster.name
    finally:
        run.close()


def kubespray_step(document: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in document["steps"] if s["name"] == "kubespray")


def bastion_file(state: lab.LabState, path: str) -> str:
    shown = as_user(state, "bastion", f"cat {path}")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


@pytest.fixture(scope="module")
def own_lab() -> Iterator[lab.LabState]:
    require_lab()
    with held(session_lock(OWN_PREFIX), timeout=LOCK_WAIT):
        lab.down(PARAMS["name_prefix"], PARAMS["user"], PARAMS["state_dir"])
        try:
            yield lab.up(**PARAMS)
        finally:
            lab.down(PARAMS["name_prefix"], PARAMS["user"], PARAMS["state_dir"])


@pytest.fixture(scope="module")
def config(own_lab: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_config(own_lab, tmp_path_factory.mktemp("day-two"),
                        kubespray_vars={"kube_version": FROM_VERSION})
    set_hosts(path, own_lab, [SPARE])
    as_user(own_lab, "bastion", "mkdir -p ~/.kube && chmod 700 ~/.kube")
    written = lab.host_exec(own_lab, "bastion", ["su", "-", own_lab.user, "-c",
                                                 "umask 077 && cat > ~/.kube/config"],
                            input=OTHER_KUBECONFIG, timeout=60)
    assert written.returncode == 0, written.stderr
    return path


def test_deploy_one_control_plane_and_two_workers(config: Path) -> None:
    code, report, stderr = invoke(config, "deploy", "--json", "--no-switch")
    assert code == 0, json.dumps(report, indent=1)[-3000:] + stderr
    state = health(config)
    assert state.healthy and set(state.registered) == {"k8s-m0", "k8s-w0", "k8s-w1"}
    assert state.api_version == f"v{FROM_VERSION}"


def test_a_worker_added_to_the_inventory_is_added_alone(own_lab: lab.LabState,
                                                        config: Path) -> None:
    set_hosts(config, own_lab, [])
    code, planned, stderr = invoke(config, "deploy", "--json", "--no-switch", "--dry-run")
    assert code == 0, stderr
    step = kubespray_step(planned)
    assert step["extra"]["reasons"] == [f"add {SPARE}"]
    would = [r["detail"] for r in step["hosts"] if r["host"] == "bastion"
             and r["data"]["part"] in ("playbooks/facts.yml", "scale.yml")]
    assert len(would) == 2 and "playbooks/facts.yml -b" in would[0]
    assert f"scale.yml -b --limit {SPARE}" in would[1]

    code, report, stderr = invoke(config, "deploy", "--json", "--no-switch")
    assert code == 0, json.dumps(report, indent=1)[-3000:] + stderr
    step = kubespray_step(report)
    scale = step["extra"]["playbook"]
    assert set(scale["recap"]) == {SPARE}, scale["recap"]  # only the new node
    facts = [r for r in step["hosts"] if r["data"]["part"] == "playbooks/facts.yml"]
    assert {r["host"] for r in facts} >= {"k8s-m0", "k8s-w0", "k8s-w1", SPARE}
    changed = {r["host"] for r in step["hosts"] if r["host"] != "bastion"
               and r["status"] == "changed" and r["data"]["part"] in ("authorized_keys",
                                                                      "scale.yml")}
    assert changed == {SPARE}  # SSH trust and the playbook: the new node only
    state = health(config)
    assert state.healthy and len(state.ready) == 4, state.detail

    code, again, stderr = invoke(config, "deploy", "--json", "--no-switch")
    assert code == 0, stderr
    assert kubespray_step(again)["status"] == "ok", kubespray_step(again)
    assert again["changed"] is False


def test_remove_node_leaves_three_nodes(own_lab: lab.LabState, config: Path) -> None:
    w1 = own_lab.host("k8s-w1").private_address
    assert w1 in bastion_file(own_lab, "~/.ssh/kubebastion_known_hosts")
    code, report, stderr = invoke(config, "remove-node", "k8s-w1", "--yes", "--json")
    assert code == 0, json.dumps(report, indent=1)[-3000:] + stderr
    assert report["plan"] == "remove k8s-w1 (worker)"
    command = next(r["detail"] for r in report["rows"] if r["host"] == "bastion"
                   and r["data"]["part"] == "remove-node.yml")
    assert "-e node=k8s-w1 -e skip_confirmation=yes" in command
    assert any("remove k8s-w1 from the inventory" in n for n in report["notes"])
    state = health(config)
    assert set(state.registered) == {"k8s-m0", "k8s-w0", SPARE}, state.detail
    listed = as_user(own_lab, "bastion",
                     f"kubectl --context {cluster_name(config)} get nodes -o name")
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == ["node/k8s-m0", "node/k8s-w0", f"node/{SPARE}"]
    assert w1 not in bastion_file(own_lab, "~/.ssh/kubebastion_known_hosts")

    set_hosts(config, own_lab, ["k8s-w1"])  # as the output says: no playbook to run now
    code, again, stderr = invoke(config, "deploy", "--json", "--no-switch",
                                 "--steps", "kubespray")
    assert code == 0, stderr
    step = kubespray_step(again)
    assert "playbook" not in step.get("extra", {}), step
    assert any(r["detail"].startswith("skipped: the last successful run was made from this "
                                      "exact state") for r in step["hosts"]), step


def test_removing_the_first_control_plane_is_refused(config: Path) -> None:
    code, _, stderr = invoke(config, "remove-node", "k8s-m0", "--yes")
    assert code == 2
    assert "cannot remove the first control plane (kube_control_plane[0])" in stderr
    assert "k8s-m0" in health(config).registered


def test_upgrade_two_minor_versions_is_refused(config: Path) -> None:
    code, _, stderr = invoke(config, "upgrade", "--kube-version", "v1.36.0")
    assert code == 2
    assert f"v{FROM_VERSION} -> v1.36.0 skips 1 minor version(s)" in stderr
    assert health(config).api_version == f"v{FROM_VERSION}"


def test_upgrade_one_minor_version_node_by_node(own_lab: lab.LabState, config: Path) -> None:
    set_kube_version(config, TO_VERSION)
    code, planned, stderr = invoke(config, "deploy", "--json", "--no-switch", "--dry-run",
                                   "--steps", "kubespray")
    assert code == 0, stderr
    step = kubespray_step(planned)
    assert f"upgrade Kubernetes v{FROM_VERSION} -> v{TO_VERSION}" in " ".join(
        step["extra"]["reasons"])
    assert any("upgrade-cluster.yml" in r["detail"] for r in step["hosts"])

    started = time.time()
    code, report, stderr = invoke(config, "upgrade", "--kube-version", f"v{TO_VERSION}",
                                  "--json")
    assert code == 0, json.dumps(report, indent=1)[-3000:] + stderr
    state = health(config)
    assert state.healthy and state.api_version == f"v{TO_VERSION}", state.detail
    assert report["notes"] == []  # kubespray_vars says the same version: recorded
    order = own_lab.host("k8s-m0").host_dir / "etc-kubernetes" / "lab" / "upgrade-order.jsonl"
    events = [json.loads(line) for line in order.read_text().splitlines()]
    events = [e for e in events if e["time"] >= started]
    nodes = ["k8s-m0", "k8s-w0", SPARE]
    assert sorted({e["node"] for e in events}) == sorted(nodes)
    for first, second in zip(events[::2], events[1::2], strict=True):  # one at a time
        assert (first["event"], second["event"]) == ("upgrading", "upgraded")
        assert first["node"] == second["node"]


def test_reset_needs_the_cluster_name(own_lab: lab.LabState, config: Path) -> None:
    code, _, stderr = invoke(config, "reset", stdin="")
    assert code == 2 and "reset not confirmed" in stderr
    code, _, stderr = invoke(config, "reset", stdin="yes\n")
    assert code == 2 and "'yes' is not the cluster name" in stderr
    assert health(config).healthy

    code, report, stderr = invoke(config, "reset", "--yes-destroy", cluster_name(config),
                                  "--json")
    assert code == 0, json.dumps(report, indent=1)[-3000:] + stderr
    assert not health(config).api_version
    assert bastion_file(own_lab, "~/.kube/config") == OTHER_KUBECONFIG
    gone = as_user(own_lab, "bastion", "ls ~/.ssh/kubebastion_known_hosts")
    assert gone.returncode != 0
