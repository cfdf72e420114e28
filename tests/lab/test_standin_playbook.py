"""The kubespray stand-in (lab/kubespray) run for real: from the bastion, over SSH, to the nodes.

What kubebastion's kubespray step does, done by hand: the kubespray directory and a
wheelhouse of its requirements.txt (real kubespray v2.31.0's: ansible 11.13.0 and friends,
downloaded once into kubebastion's operator-side cache) land in the lab user's home on the
bastion, a venv is built there without network, an inventory in kubespray's v2.31 format is
written, and ``ansible-playbook -i inventory/lab/hosts.yaml cluster.yml -b`` runs as the lab
user with host key checking ON. Torn down with reset.yml; ssh control masters are closed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509

import lab
from tests.lab.helpers import EXTRA_SANS, WORK, Bastion, recap, standin_bastion, write_inventory

pytestmark = pytest.mark.lab

@pytest.fixture(scope="module")
def bastion(lab_env: lab.LabState) -> Iterator[Bastion]:
    """The stand-in installed on the bastion, as kubebastion's kubespray step would do it."""
    with standin_bastion(lab_env) as b:
        yield b


@pytest.fixture(scope="module")
def first_run(bastion: Bastion) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = bastion.playbook("cluster.yml")
    return result, time.monotonic() - started


def admin_kubeconfig(state: lab.LabState, cp: lab.HostState, tmp_path: Path) -> Path:
    """admin.conf of a control plane with its server rewritten (through YAML) to cp's address."""
    kc = yaml.safe_load((cp.host_dir / "etc-kubernetes" / "admin.conf").read_text())
    kc["clusters"][0]["cluster"]["server"] = f"https://{cp.private_address}:6443"
    path = tmp_path / f"{cp.name}.conf"
    path.write_text(yaml.safe_dump(kc))
    return path


def test_first_run_deploys_and_every_node_is_ready(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float],
        tmp_path: Path) -> None:
    result, seconds = first_run
    assert result.returncode == 0, result.stdout[-4000:]
    print(f"first run: {seconds:.1f} s; profile_tasks' summary:")
    print(result.stdout[result.stdout.rfind("=" * 20):])
    state = bastion.state
    counts = recap(result.stdout)
    assert set(counts) == {h.name for h in state.nodes}
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values())
    for cp in (h for h in state.nodes if h.role == "control_plane"):
        st = lab.host_exec(state, cp.name, ["stat", "-c", "%a %U %G", "/etc/kubernetes/admin.conf"])
        assert st.stdout.split() == ["600", "root", "root"]
        kc = yaml.safe_load((cp.host_dir / "etc-kubernetes" / "admin.conf").read_text())
        assert kc["clusters"][0]["cluster"]["server"] == f"https://{cp.private_address}:6443"
        kubeconfig = admin_kubeconfig(state, cp, tmp_path)
        deadline, out = time.monotonic() + 30, ""
        while time.monotonic() < deadline:
            proc = lab.exec_in(state.bastion.namespace,
                               ["kubectl", f"--kubeconfig={kubeconfig}", "get", "nodes"])
            out = proc.stdout
            rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
            if rows == {h.name: "Ready" for h in state.nodes}:
                break
            time.sleep(1)
        else:
            pytest.fail(f"not every node Ready through {cp.name}:\n{out}{proc.stderr}")


def test_second_run_changes_nothing(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    assert first_run[0].returncode == 0
    started = time.monotonic()
    result = bastion.playbook("cluster.yml")
    print(f"second run: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-4000:]
    counts = recap(result.stdout)
    assert counts and all(c["changed"] == 0 and c["failed"] == 0 for c in counts.values()), \
        result.stdout[-4000:]


def test_injected_failure_names_the_host_and_the_task(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    victim = next(h.name for h in bastion.state.nodes if h.role == "worker")
    result = bastion.playbook("cluster.yml", "-e", f"lab_fail_on_host={victim}")
    assert result.returncode != 0
    assert "TASK [lab: injected failure]" in result.stdout
    assert f"fatal: [{victim}]" in result.stdout
    assert f"injected failure for {victim}" in result.stdout
    assert recap(result.stdout)[victim]["failed"] == 1


def test_even_etcd_count_fails_validation(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    etcd = [h.name for h in bastion.state.nodes][:2]
    write_inventory(bastion, "even-etcd", etcd=etcd)
    result = bastion.playbook("cluster.yml", inventory="even-etcd")
    assert result.returncode != 0
    assert "TASK [validate_inventory : Stop if even number of etcd hosts]" in result.stdout
    assert not (bastion.host_home / WORK / "kubespray" / "inventory" / "even-etcd" / "artifacts"
                ).exists()


#: kubespray v2.31.0's own validate_inventory stops these before anything is installed.
INVALID = {
    "kube_version below the window": (
        {"kube_version": "1.32.0"}, "Stop if unsupported version of Kubernetes"),
    "kube_version above the window": (
        {"kube_version": "1.35.5"}, "Download_file | Check if requested Kubernetes are supported"),
    "string boolean": (
        {"download_run_once": "false"}, "Stop if known booleans are set as strings"),
    "subnet not a network": (
        {"kube_pods_subnet": "10.233.64.1"}, "Check that kube_pods_subnet is a network range"),
    "pods subnet inside the services'": (  # the only overlap kubespray's check catches
        {"kube_pods_subnet": "10.233.0.0/20"},
        "Check that kube_pods_subnet does not collide with kube_service_addresses"),
}


@pytest.mark.parametrize("variables,task", INVALID.values(), ids=INVALID.keys())
def test_real_validation_stops_bad_variables(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float],
        variables: dict[str, str], task: str) -> None:
    result = bastion.playbook("cluster.yml", "-e", json.dumps(variables))
    assert result.returncode != 0
    assert f"TASK [validate_inventory : {task}" in result.stdout, result.stdout[-3000:]
    assert "PLAY [Install the control plane]" not in result.stdout
    assert any(c["failed"] >= 1 for c in recap(result.stdout).values())


def test_kube_version_is_v231s_default_and_the_api_reports_it(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float],
        tmp_path: Path) -> None:
    assert first_run[0].returncode == 0
    state = bastion.state
    cp = next(h for h in state.nodes if h.role == "control_plane")
    kubeconfig = admin_kubeconfig(state, cp, tmp_path)
    version = lab.exec_in(state.bastion.namespace, ["kubectl", f"--kubeconfig={kubeconfig}",
                                                    "version", "-o", "json"])
    assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.35.4"
    nodes = lab.exec_in(state.bastion.namespace, ["kubectl", f"--kubeconfig={kubeconfig}",
                                                  "get", "nodes", "--no-headers"])
    assert {line.split()[4] for line in nodes.stdout.splitlines()} == {"v1.35.4"}


def test_host_keys_are_checked(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    bastion.sh(": > .ssh/standin_empty_known_hosts", timeout=30)
    result = bastion.playbook("cluster.yml", known_hosts=".ssh/standin_empty_known_hosts",
                              multiplex=False)  # an open master would skip the check
    bastion.sh("rm -f .ssh/standin_empty_known_hosts", timeout=30)
    assert result.returncode != 0
    assert "Host key verification failed" in result.stdout


def test_apiserver_certificate_has_kubesprays_sans(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    assert first_run[0].returncode == 0
    cps = [h for h in bastion.state.nodes if h.role == "control_plane"]
    pem = (cps[0].host_dir / "etc-kubernetes" / "pki" / "apiserver.crt").read_bytes()
    ext = x509.load_pem_x509_certificate(pem).extensions
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    expected = {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local", "localhost", "127.0.0.1", "::1",
                "10.233.0.1", *EXTRA_SANS}
    expected |= {h.name for h in cps} | {h.private_address for h in cps}
    assert names == expected


def test_kubeconfig_localhost_writes_artifacts_admin_conf(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    assert first_run[0].returncode == 0
    cp = next(h for h in bastion.state.nodes if h.role == "control_plane")
    artifact = bastion.host_home / WORK / "kubespray" / "inventory" / "lab" / "artifacts"
    kc = yaml.safe_load((artifact / "admin.conf").read_text())
    assert kc["clusters"][0]["cluster"]["server"] == f"https://{cp.private_address}:6443"
    nodes = bastion.sh(f"kubectl --kubeconfig={WORK}/kubespray/inventory/lab/artifacts/admin.conf"
                       " get nodes -o name", timeout=60)
    assert nodes.returncode == 0, nodes.stderr
    assert len(nodes.stdout.split()) == len(bastion.state.nodes)


def test_admin_conf_server_can_be_v230s_localhost(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    assert first_run[0].returncode == 0
    cp = next(h for h in bastion.state.nodes if h.role == "control_plane")
    result = bastion.playbook("cluster.yml", "-e", "lab_admin_conf_server=localhost")
    assert result.returncode == 0, result.stdout[-4000:]
    kc = yaml.safe_load((cp.host_dir / "etc-kubernetes" / "admin.conf").read_text())
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert recap(result.stdout)[cp.name]["changed"] == 1  # admin.conf only


def test_tags_facts_asserts_check_every_node_and_install_nothing(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    """kubespray's quick checks, as real v2.31.0 runs them: facts, validation and
    kubernetes/preinstall's assertions (the vendored files), nothing else."""
    result = bastion.playbook("cluster.yml", "--tags", "facts,asserts")
    assert result.returncode == 0, result.stdout[-4000:]
    counts = recap(result.stdout)
    assert set(counts) == {h.name for h in bastion.state.nodes}
    assert all(c["failed"] == c["changed"] == c["unreachable"] == 0 and c["ok"] > 0
               for c in counts.values()), result.stdout[-4000:]
    for task in ("validate_inventory : Stop if even number of etcd hosts",
                 "kubernetes/preinstall : Stop if non systemd OS type",
                 "kubernetes/preinstall : Stop if ip var does not match local ips",
                 "kubernetes/preinstall : Stop if access_ip is not pingable"):
        assert f"TASK [{task}]" in result.stdout
    assert "TASK [lab_cluster :" not in result.stdout


def test_an_ip_that_is_not_the_hosts_own_is_stopped_by_preinstall(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    victim = next(h for h in bastion.state.nodes if h.role == "worker")
    foreign = "198.18.255.254"  # in the lab's range, on no lab host
    write_inventory(bastion, "foreign-ip", ips={victim.name: foreign})
    result = bastion.playbook("cluster.yml", inventory="foreign-ip")
    assert result.returncode != 0
    task = "TASK [kubernetes/preinstall : Stop if ip var does not match local ips]"
    assert task in result.stdout
    failed = result.stdout[result.stdout.index(task):].split("TASK [", 2)[1]
    assert f"fatal: [{victim.name}]" in failed and f"do not contain '{foreign}'" in failed
    assert recap(result.stdout)[victim.name]["failed"] == 1
    assert "PLAY [Install the control plane]" not in result.stdout
