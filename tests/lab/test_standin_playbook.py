"""The kubespray stand-in (lab/kubespray) run for real: from the bastion, over SSH, to the nodes.

What kubebastion's kubespray step does, done by hand: the kubespray directory and a
wheelhouse of its requirements.txt land in the lab user's home on the bastion, a venv is
built there without network, an inventory in kubespray's v2.31 format is written, and
``ansible-playbook -i inventory/lab/hosts.yaml cluster.yml -b`` runs as the lab user with
host key checking ON. Torn down with reset.yml; ssh control masters are closed.
"""

from __future__ import annotations

import pwd
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509

import lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
KUBESPRAY = REPO / "lab" / "kubespray"
WHEELHOUSE = REPO / "lab" / "state" / "standin-wheelhouse"
WORK = "standin-test"
EXTRA_SANS = ["198.18.0.2", "k8s-api.lab.test"]  # under the lab user's home on the bastion
SSH_ARGS = "-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts} "
MULTIPLEX = "-o ControlMaster=auto -o ControlPersist=60s"


@dataclass
class Bastion:
    state: lab.LabState
    home: str  # the lab user's home, as the bastion sees it
    host_home: Path  # the same directory, as the machine sees it

    def sh(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a shell script on the bastion as the lab user, in its home."""
        env = f"HOME={self.home} PATH=/usr/local/bin:/usr/bin:/bin"
        argv = ["runuser", "-u", self.state.user, "--", "sh", "-c",
                f"cd {self.home} && env {env} sh -c {shlex.quote(script)}"]
        return lab.host_exec(self.state, "bastion", argv, timeout=timeout)

    def put(self, src: Path, rel: str) -> None:
        """Copy a file or directory into the lab user's home (what an upload does)."""
        dest = self.host_home / rel
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "artifacts"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
        subprocess.run(["chown", "-R", f"{self.state.user}:", str(self.host_home / WORK)],
                       check=True)

    def playbook(self, playbook: str, *args: str, inventory: str = "lab",
                 known_hosts: str = ".ssh/standin_known_hosts",
                 multiplex: bool = True) -> subprocess.CompletedProcess[str]:
        ssh_args = SSH_ARGS.format(known_hosts=f"{self.home}/{known_hosts}") + (
            MULTIPLEX if multiplex else "-o ControlMaster=no -o ControlPath=none")
        return self.sh(
            f"cd {WORK}/kubespray && ANSIBLE_HOST_KEY_CHECKING=True "
            f"ANSIBLE_SSH_ARGS={shlex.quote(ssh_args)} ../venv/bin/ansible-playbook "
            f"-i inventory/{inventory}/hosts.yaml {playbook} -b {shlex.join(args)} 2>&1")


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    rows = re.findall(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.MULTILINE)
    return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in rows}


def write_inventory(bastion: Bastion, name: str, etcd: list[str] | None = None) -> None:
    state = bastion.state
    cps = [h.name for h in state.nodes if h.role == "control_plane"]
    workers = [h.name for h in state.nodes if h.role == "worker"]
    inventory = {"all": {
        "hosts": {h.name: {"ansible_host": h.private_address, "ip": h.private_address,
                           "access_ip": h.private_address} for h in state.nodes},
        "children": {
            "kube_control_plane": {"hosts": dict.fromkeys(cps)},
            "etcd": {"hosts": dict.fromkeys(cps if etcd is None else etcd)},
            "kube_node": {"hosts": dict.fromkeys(workers)},
            "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}},
        }}}
    group_vars = {"ansible_user": state.user,
                  "ansible_ssh_private_key_file": f"{bastion.home}/.ssh/standin_id",
                  "kubeconfig_localhost": True, "supplementary_addresses_in_ssl_keys": EXTRA_SANS}
    inv = bastion.host_home / WORK / "kubespray" / "inventory" / name
    (inv / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yaml").write_text(yaml.safe_dump(inventory))
    (inv / "group_vars" / "all" / "lab.yml").write_text(yaml.safe_dump(group_vars))
    subprocess.run(["chown", "-R", f"{state.user}:", str(inv)], check=True)


@pytest.fixture(scope="module")
def bastion(lab_env: lab.LabState) -> Iterator[Bastion]:
    """The stand-in installed on the bastion, as kubebastion's kubespray step would do it."""
    if not any(WHEELHOUSE.glob("ansible_core-2.18.19-*.whl")):
        pip = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE),
                              "-r", str(KUBESPRAY / "requirements.txt")],
                             capture_output=True, text=True, timeout=600)
        assert pip.returncode == 0, pip.stderr
    home = pwd.getpwnam(lab_env.user).pw_dir
    b = Bastion(lab_env, home, lab_env.bastion.host_dir / home.lstrip("/"))
    b.put(KUBESPRAY, f"{WORK}/kubespray")
    b.put(WHEELHOUSE, f"{WORK}/wheelhouse")
    for src, rel in ((lab_env.private_key, "standin_id"),
                     (lab_env.known_hosts, "standin_known_hosts")):
        shutil.copy(src, b.host_home / ".ssh" / rel)
        subprocess.run(["chown", f"{lab_env.user}:", str(b.host_home / ".ssh" / rel)], check=True)
    (b.host_home / ".ssh" / "standin_id").chmod(0o600)
    write_inventory(b, "lab")
    venv = b.sh(f"cd {WORK} && /usr/bin/python3 -m venv venv && venv/bin/pip install -q "
                "--no-index --find-links wheelhouse -r kubespray/requirements.txt 2>&1")
    assert venv.returncode == 0, venv.stdout + venv.stderr
    try:
        yield b
    finally:
        b.playbook("reset.yml", "-e", "skip_confirmation=true")
        b.sh("for s in .ansible/cp/*; do [ -S \"$s\" ] && ssh -o ControlPath=\"$s\" -O exit x; "
             f"done; rm -rf {WORK} .ssh/standin_id .ssh/standin_known_hosts", timeout=60)


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
    print(f"first run: {seconds:.1f} s")
    state = bastion.state
    counts = recap(result.stdout)
    assert set(counts) == {h.name for h in state.nodes}
    assert all(c["failed"] == 0 and c["unreachable"] == 0 for c in counts.values())
    for cp in (h for h in state.nodes if h.role == "control_plane"):
        st = lab.host_exec(state, cp.name, ["stat", "-c", "%a %U %G", "/etc/kubernetes/admin.conf"])
        assert st.stdout.split() == ["600", "root", "root"]
        kc = yaml.safe_load((cp.host_dir / "etc-kubernetes" / "admin.conf").read_text())
        assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
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
    assert "Stop if even number of etcd hosts" in result.stdout
    assert "etcd needs an odd number of members" in result.stdout


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


def test_admin_conf_server_can_be_the_node_address(
        bastion: Bastion, first_run: tuple[subprocess.CompletedProcess[str], float]) -> None:
    assert first_run[0].returncode == 0
    cp = next(h for h in bastion.state.nodes if h.role == "control_plane")
    result = bastion.playbook("cluster.yml", "-e", "lab_admin_conf_server=node_address")
    assert result.returncode == 0, result.stdout[-4000:]
    kc = yaml.safe_load((cp.host_dir / "etc-kubernetes" / "admin.conf").read_text())
    assert kc["clusters"][0]["cluster"]["server"] == f"https://{cp.private_address}:6443"
    assert recap(result.stdout)[cp.name]["changed"] == 1  # admin.conf only
