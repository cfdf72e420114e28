"""Steps 3 and 4 against the lab, for real: admin.conf for the login user, then the
kubeconfig on the bastion (and through a tunnel on the operator), with real kubectl.

The module fixture runs the kubespray stand-in (``--force``: whatever an earlier module
deployed) with ``lab_admin_conf_server: localhost``, so admin.conf says
``https://127.0.0.1:6443`` as kubespray up to v2.30 writes it: the classic failure. The
stand-in's default is v2.31's form, the node's own address (tested here too).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml

import lab
from tests.lab import helpers
from tests.lab.helpers import (
    INVOKE,
    REPO,
    as_root,
    as_user,
    invoke_kubespray,
    write_config,
)

pytestmark = pytest.mark.lab

invoke = partial(helpers.invoke, timeout=180, columns=False)


def bastion_config(state: lab.LabState) -> str:
    return as_root(state, "bastion", f"cat /home/{state.user}/.kube/config").stdout


def put_bastion_config(state: lab.LabState, text: str) -> None:
    path = f"/home/{state.user}/.kube/config"
    as_root(state, "bastion", f"mkdir -p /home/{state.user}/.kube")
    lab.host_exec(state, "bastion", ["sh", "-c", f"cat > {path}; chown -R {state.user}: "
                                     f"/home/{state.user}/.kube; chmod 600 {path}"],
                  input=text, check=True)


@pytest.fixture(scope="module")
def config(lab_env: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = write_config(lab_env, tmp_path_factory.mktemp("kubeconfig-config"),
                        kubespray_vars={"lab_admin_conf_server": "localhost"})
    deployed = invoke_kubespray(path, "--force")
    assert deployed.code == 0, deployed.stderr[-2000:]
    yield path


@pytest.fixture(scope="module")
def admin_conf(lab_env: lab.LabState, config: Path) -> str:
    cp = next(n.name for n in lab_env.nodes if n.role == "control_plane")
    return as_root(lab_env, cp, "cat /etc/kubernetes/admin.conf").stdout


def test_admin_conf_becomes_the_login_users_kubeconfig(lab_env: lab.LabState,
                                                       config: Path) -> None:
    cp = next(n.name for n in lab_env.nodes if n.role == "control_plane")
    home = f"/home/{lab_env.user}"
    as_root(lab_env, cp, f"rm -rf {home}/.kube && mkdir -p {home}/.kube && "
            f"echo 'theirs: 1' > {home}/.kube/config")  # a different file: backed up
    first = invoke("admin-conf", "--config", str(config), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    row, = json.loads(first.stdout)["hosts"]
    assert row["status"] == "changed" and row["data"]["backup"]
    assert as_root(lab_env, cp, f"cat {row['data']['backup']}").stdout == "theirs: 1\n"
    stat = as_root(lab_env, cp, f"stat -c '%U %G %a' {home}/.kube/config {home}/.kube")
    group = as_root(lab_env, cp, f"id -gn {lab_env.user}").stdout.strip()
    assert stat.stdout.split("\n")[:2] == [f"{lab_env.user} {group} 600",
                                           f"{lab_env.user} {group} 700"]
    kubectl = as_user(lab_env, cp, "kubectl get node")
    assert kubectl.returncode == 0, kubectl.stderr
    assert all(n.name in kubectl.stdout for n in lab_env.nodes)
    second = invoke("admin-conf", "--config", str(config), "--json")
    assert second.returncode == 0
    assert json.loads(second.stdout)["hosts"][0]["status"] == "ok"


def test_classic_error_then_fetch_kubeconfig_fixes_it(lab_env: lab.LabState, config: Path,
                                                      admin_conf: str) -> None:
    # The hand copy reproduces the classic failure on the bastion.
    put_bastion_config(lab_env, admin_conf)
    refused = as_user(lab_env, "bastion", "kubectl get nodes --request-timeout=5s")
    assert refused.returncode != 0
    assert "127.0.0.1:6443" in refused.stderr and "refused" in refused.stderr
    # An unrelated context and a stale same-named entry (another CA) are already there.
    other_ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nstale\n").decode()
    existing = {
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://198.18.9.9:6443"}},
                     {"name": "lab", "cluster": {"server": "https://198.18.9.10:6443",
                                                 "certificate-authority-data": other_ca}}],
        "users": [{"name": "other", "user": {"token": "abc"}},
                  {"name": "lab", "user": {"token": "stale"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}},
                     {"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
    }
    put_bastion_config(lab_env, yaml.safe_dump(existing))
    fetched = invoke("fetch-kubeconfig", "--config", str(config))
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    kubectl = as_user(lab_env, "bastion", "kubectl get nodes")
    assert kubectl.returncode == 0, kubectl.stderr
    lines = kubectl.stdout.splitlines()[1:]
    assert sorted(line.split()[0] for line in lines) == sorted(n.name for n in lab_env.nodes)
    assert all(line.split()[1] == "Ready" for line in lines)
    merged = yaml.safe_load(bastion_config(lab_env))
    assert merged["current-context"] == "lab"
    other = next(c for c in merged["clusters"] if c["name"] == "other")
    assert other == existing["clusters"][0]
    lab_cluster = next(c for c in merged["clusters"] if c["name"] == "lab")["cluster"]
    wanted_ca = yaml.safe_load(admin_conf)["clusters"][0]["cluster"]
    assert lab_cluster["certificate-authority-data"] == wanted_ca["certificate-authority-data"]
    cp = next(n for n in lab_env.nodes if n.role == "control_plane")
    assert lab_cluster["server"] == f"https://{cp.private_address}:6443"
    assert "token" not in next(u for u in merged["users"] if u["name"] == "lab")["user"]
    mode = as_root(lab_env, "bastion", f"stat -c %a /home/{lab_env.user}/.kube/config")
    assert mode.stdout.strip() == "600"
    again = invoke("fetch-kubeconfig", "--config", str(config), "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["hosts"][0]["status"] == "ok"


def test_v231_admin_conf_with_the_node_address_works_too(lab_env: lab.LabState,
                                                         config: Path) -> None:
    cp = next(n for n in lab_env.nodes if n.role == "control_plane")
    as_root(lab_env, cp.name, "cp -p /etc/kubernetes/admin.conf /root/admin.conf.v230 && "
            f"sed -i 's#server: https://127.0.0.1:6443#server: https://{cp.private_address}"
            ":6443#' /etc/kubernetes/admin.conf")
    try:
        fetched = invoke("fetch-kubeconfig", "--config", str(config), "--json")
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        assert json.loads(fetched.stdout)["hosts"][0]["data"]["server"] == (
            f"https://{cp.private_address}:6443")
        assert as_user(lab_env, "bastion", "kubectl get nodes").returncode == 0
    finally:
        as_root(lab_env, cp.name, "mv /root/admin.conf.v230 /etc/kubernetes/admin.conf")


def test_an_address_outside_the_sans_stops_and_writes_nothing(
        lab_env: lab.LabState, config: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "inventory").mkdir()
    for name in ("hosts.yaml", "groups.yaml"):
        (outside / "inventory" / name).write_text(
            (config.parent / "inventory" / name).read_text())
    defaults = yaml.safe_load((config.parent / "inventory" / "defaults.yaml").read_text())
    defaults["data"]["api_address"] = "198.18.1.250"
    (outside / "inventory" / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    (outside / "nornir_config.yaml").write_text(config.read_text())
    before = hashlib.sha256(bastion_config(lab_env).encode()).hexdigest()
    result = invoke("fetch-kubeconfig", "--config", str(outside / "nornir_config.yaml"))
    assert result.returncode == 1
    message = result.stdout + result.stderr
    assert "198.18.1.250" in message and "supplementary_addresses_in_ssl_keys" in message
    assert "127.0.0.1" in message  # the SANs are listed
    assert hashlib.sha256(bastion_config(lab_env).encode()).hexdigest() == before


def test_kill_9_during_the_write_leaves_a_complete_file(lab_env: lab.LabState,
                                                        config: Path) -> None:
    before = bastion_config(lab_env)
    proc = subprocess.Popen([INVOKE, "fetch-kubeconfig", "--config", str(config),
                             "--context", "killed"], cwd=REPO,
                            env={**os.environ, "KUBEBASTION_TEST_PAUSE_BEFORE_RENAME": "20"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bastion_ns = lab_env.bastion.namespace
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        pids = lab.pids_running(bastion_ns, b"config.kubebastion.lock", b"sleep 20")
        victim = pids[0] if pids else None
        time.sleep(0.2)
    if victim is None:
        proc.kill()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"the committer never started (exit {proc.returncode}):\n{out}\n{err}")
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert bastion_config(lab_env) == before
    config_doc = yaml.safe_load(before)
    assert "killed" not in {c["name"] for c in config_doc["contexts"]}
    rerun = invoke("fetch-kubeconfig", "--config", str(config), "--context", "killed",
                   "--no-switch")
    assert rerun.returncode == 0, rerun.stderr
    after = yaml.safe_load(bastion_config(lab_env))
    assert {"killed", "lab", "other"} <= {c["name"] for c in after["contexts"]}


def test_local_context_through_the_tunnel_with_tls_verification(
        lab_env: lab.LabState, config: Path, tmp_path: Path) -> None:
    port = 26443
    local = tmp_path / "kube" / "config"
    tunnel = subprocess.Popen([INVOKE, "tunnel", "--config", str(config), "--port", str(port)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        fetched = invoke("fetch-kubeconfig", "--config", str(config), "--local", str(local),
                         "--tunnel-port", str(port))
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        document = yaml.safe_load(local.read_text())
        cluster = document["clusters"][0]["cluster"]
        assert cluster["server"] == f"https://127.0.0.1:{port}"
        assert cluster["tls-server-name"] and "insecure-skip-tls-verify" not in cluster
        assert local.stat().st_mode & 0o777 == 0o600
        kubectl = subprocess.run(["kubectl", "--kubeconfig", str(local), "get", "nodes",
                                  "--request-timeout=10s"], capture_output=True, text=True,
                                 timeout=60, check=False)
        assert kubectl.returncode == 0, kubectl.stderr
        assert all(n.name in kubectl.stdout for n in lab_env.nodes)
    finally:
        tunnel.send_signal(signal.SIGTERM)
        tunnel.communicate(timeout=20)


def test_a_node_whose_agent_stopped_times_out_by_name(lab_env: lab.LabState,
                                                      config: Path) -> None:
    worker = next(n for n in lab_env.nodes if n.role == "worker")
    stopped = as_root(lab_env, worker.name,
                      "kill $(python3 -c 'import json; print(json.load(open("
                      "\"/etc/kubernetes/lab/agent.pid\"))[\"pid\"])') && echo stopped")
    assert "stopped" in stopped.stdout, stopped.stderr
    cp = next(n.name for n in lab_env.nodes if n.role == "control_plane")
    try:
        deadline = time.monotonic() + 60  # the API's grace period runs out first
        while "NotReady" not in as_root(lab_env, cp, "kubectl --kubeconfig /etc/kubernetes/"
                                        f"admin.conf get node {worker.name}").stdout:
            assert time.monotonic() < deadline, f"{worker.name} never turned NotReady"
            time.sleep(1)
        result = invoke("fetch-kubeconfig", "--config", str(config), "--timeout", "15")
        assert result.returncode == 1
        message = result.stdout + result.stderr
        assert "not Ready" in message and worker.name in message
    finally:
        restored = invoke_kubespray(config, "--force")
        assert restored.code == 0
