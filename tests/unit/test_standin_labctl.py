"""Tests of the stand-in's host helper (labctl.py) and Jinja filters; helpers for the others.

labctl.py runs on the lab hosts with their python3 and python3-cryptography: certificates
must be reissued exactly when kubespray would (SANs, CA or subject changed) and kept
otherwise, and `daemon` must start a background process once."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from cryptography import x509

REPO = Path(__file__).resolve().parents[2]
KUBESPRAY = REPO / "lab" / "kubespray"
FILES = KUBESPRAY / "roles" / "lab_cluster" / "files"
APISERVER = REPO / "lab" / "apiserver" / "apiserver.py"
AGENT = REPO / "lab" / "apiserver" / "agent.py"
LABCTL = FILES / "labctl.py"
HOST_PYTHON = "/usr/bin/python3"


def python_with_cryptography() -> str:
    """The lab hosts' python3 when it has cryptography (as on the hosts), else ours."""
    probe = subprocess.run([HOST_PYTHON, "-c", "import cryptography"], capture_output=True)
    return HOST_PYTHON if probe.returncode == 0 else sys.executable


def labctl(*args: str, stdin: str | None = None) -> dict[str, object]:
    proc = subprocess.run(
        [python_with_cryptography(), str(LABCTL), *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def node_cert(pki: Path, name: str, stem: str | None = None) -> None:
    """Key + CSR in pki, signed with the CA in pki: stem.crt / stem.key (CN system:node:name)."""
    stem = stem or f"node-{name}"
    subject = ["--cn", f"system:node:{name}", "--org", "system:nodes"]
    csr = labctl("csr", "--dir", str(pki), "--name", stem, *subject)["csr"]
    assert isinstance(csr, str)
    cert = labctl("sign", "--dir", str(pki), *subject, stdin=csr)["cert"]
    assert isinstance(cert, str)
    (pki / f"{stem}.crt").write_text(cert)


def make_pki(pki: Path, sans: list[str]) -> None:
    """CA, API server certificate with sans, admin client certificate."""
    labctl("ca", "--dir", str(pki))
    labctl("issue", "--dir", str(pki), "--name", "apiserver", "--cn", "kube-apiserver",
           "--server", *[f"--san={s}" for s in sans])
    labctl("issue", "--dir", str(pki), "--name", "admin", "--cn", "kubernetes-admin",
           "--org", "system:masters")


SANS = ["kubernetes", "127.0.0.1", "::1", "10.233.0.1", "198.18.1.10"]


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_pki(tmp_path, SANS)
    return tmp_path


def sans_of(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)}


def issue_apiserver(pki: Path, sans: list[str]) -> bool:
    result = labctl("issue", "--dir", str(pki), "--name", "apiserver", "--cn", "kube-apiserver",
                    "--server", *[f"--san={s}" for s in sans])
    return bool(result["changed"])


def test_ca_and_certificates_are_kept_when_nothing_changed(pki: Path) -> None:
    before = {p.name: p.read_bytes() for p in pki.iterdir()}
    assert labctl("ca", "--dir", str(pki)) == {"changed": False}
    assert not issue_apiserver(pki, [*reversed(SANS), "0:0:0:0:0:0:0:1"])
    assert {p.name: p.read_bytes() for p in pki.iterdir()} == before
    assert sans_of(pki / "apiserver.crt") == set(SANS)
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600


def test_certificate_is_reissued_when_sans_or_ca_change(pki: Path) -> None:
    assert issue_apiserver(pki, [*SANS, "k8s.example.test"])
    assert "k8s.example.test" in sans_of(pki / "apiserver.crt")
    (pki / "ca.crt").unlink()
    assert labctl("ca", "--dir", str(pki))["changed"]
    assert issue_apiserver(pki, [*SANS, "k8s.example.test"])
    assert not issue_apiserver(pki, [*SANS, "k8s.example.test"])


def test_node_csr_is_only_asked_for_until_a_valid_certificate_exists(pki: Path) -> None:
    node_cert(pki, "k8s-w0", "node")
    again = labctl("csr", "--dir", str(pki), "--name", "node", "--cn", "system:node:k8s-w0",
                   "--org", "system:nodes")
    assert again == {"changed": False, "csr": None}
    cert = x509.load_pem_x509_certificate((pki / "node.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=system:node:k8s-w0,O=system:nodes"
    renamed = labctl("csr", "--dir", str(pki), "--name", "node", "--cn", "system:node:other",
                     "--org", "system:nodes")
    assert renamed["changed"] and isinstance(renamed["csr"], str)


def test_kubeconfig_is_yaml_with_embedded_credentials(pki: Path, tmp_path: Path) -> None:
    out, copy = tmp_path / "admin.conf", tmp_path / "home" / ".kube" / "config"
    args = ["kubeconfig", "--dir", str(pki), "--server", "https://127.0.0.1:6443",
            "--out", str(out), "--copy-to", str(copy)]
    assert labctl(*args)["changed"]
    assert not labctl(*args)["changed"]
    kc = yaml.safe_load(out.read_text())
    assert copy.read_text() == out.read_text()
    assert out.stat().st_mode & 0o777 == 0o600
    assert kc["clusters"][0] == {"name": "cluster.local", "cluster": {
        "server": "https://127.0.0.1:6443",
        "certificate-authority-data": kc["clusters"][0]["cluster"]["certificate-authority-data"]}}
    assert kc["current-context"] == "kubernetes-admin@cluster.local"
    assert kc["users"][0]["name"] == "kubernetes-admin"


def test_daemon_starts_once_restarts_on_change_and_stops(tmp_path: Path) -> None:
    watched, pidfile = tmp_path / "watched", tmp_path / "sleep.pid"
    watched.write_text("1")
    args = ["daemon", f"--pidfile={pidfile}", f"--log={tmp_path / 'log'}", f"--watch={watched}",
            "--", sys.executable, "-c", "import time; time.sleep(120)"]
    try:
        first = labctl(*args)
        assert first["changed"]
        assert labctl(*args) == {"changed": False, "pid": first["pid"]}
        assert os.getsid(int(str(first["pid"]))) == first["pid"], "not in a session of its own"
        watched.write_text("2")
        second = labctl(*args)
        assert second["changed"] and second["pid"] != first["pid"]
        deadline = time.monotonic() + 5
        while Path(f"/proc/{first['pid']}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stopped = labctl("stop", f"--pidfile={pidfile}")
    assert stopped == {"changed": True}
    assert labctl("stop", f"--pidfile={pidfile}") == {"changed": False}


def load_filters() -> ModuleType:
    path = KUBESPRAY / "roles" / "lab_cluster" / "filter_plugins" / "lab_net.py"
    spec = importlib.util.spec_from_file_location("lab_net", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_filters() -> None:
    f = load_filters().FilterModule().filters()
    assert f["lab_url_host"]("fd00::1") == "[fd00::1]"
    hostvars = {"a": {"ip": "198.18.1.10", "access_ip": "198.18.3.10"},
                "b": {"ansible_host": "198.18.1.11"}}
    assert f["lab_node_addresses"](["a", "b"], hostvars) == [
        {"name": "a", "ip": "198.18.1.10", "access_ip": "198.18.3.10"},
        {"name": "b", "ip": "198.18.1.11", "access_ip": "198.18.1.11"}]


def run_labctl(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([python_with_cryptography(), str(LABCTL), *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


UPGRADES = {
    "one minor up": ("v1.33.11", "v1.34.7", None),
    "patch up": ("v1.34.3", "v1.34.7", None),
    "same version": ("v1.35.4", "v1.35.4", None),
    "one minor down": ("v1.35.4", "v1.34.7", None),
    "two minors up": ("v1.33.11", "v1.35.4",
                      'Specified version to upgrade to "v1.35.4" is too high; kubeadm can '
                      "upgrade only 1 minor version at a time"),
    "two minors down": ("v1.35.4", "v1.33.0",
                        'Specified version to downgrade to "v1.33.0" is too low; kubeadm can '
                        "downgrade only 1 minor version at a time"),
}


@pytest.mark.parametrize("cluster,new,error", UPGRADES.values(), ids=UPGRADES.keys())
def test_upgrade_policy_is_kubeadms(cluster: str, new: str, error: str | None) -> None:
    proc = run_labctl("upgrade-policy", f"--cluster-version={cluster}", f"--version={new}")
    if error is None:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["changed"] is (cluster != new)
    else:
        assert proc.returncode == 1
        assert proc.stderr.startswith("[upgrade/version] FATAL: the --version argument is "
                                      "invalid due to these fatal errors:")
        assert f"\t- {error}\n" in proc.stderr


def test_record_appends_one_json_line_per_call(tmp_path: Path) -> None:
    log = tmp_path / "order.jsonl"
    for node in ("k8s-m0", "k8s-w0"):
        proc = run_labctl("record", "--file", str(log), stdin=json.dumps({"node": node}))
        assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["node"] for line in lines] == ["k8s-m0", "k8s-w0"]
    assert lines[0]["time"] <= lines[1]["time"]
    assert run_labctl("record", "--file", str(log), stdin="[1]").returncode != 0


LISTENER = """
import os, signal, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
s.set_inheritable(True)
# On SIGTERM its command line changes at once but its socket stays open 2 s longer: the
# window a real exit has too (/proc/PID/cmdline empties before the process's files close).
signal.signal(signal.SIGTERM, lambda *_: os.execv("/bin/sleep", ["sleep", "2"]))
signal.pause()
"""


def test_daemon_restart_waits_until_the_old_process_let_go_of_its_port(tmp_path: Path) -> None:
    """Seen in the upgrade's API server restart under load: 'port 6443 is already taken'."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    script, watched, pidfile = tmp_path / "listen.py", tmp_path / "watched", tmp_path / "l.pid"
    script.write_text(LISTENER)
    watched.write_text("1")
    args = ["daemon", f"--pidfile={pidfile}", f"--log={tmp_path / 'log'}", f"--watch={watched}",
            f"--wait-port={port}", "--", sys.executable, str(script), str(port)]
    try:
        first = labctl(*args)
        watched.write_text("2")
        second = run_labctl(*args)
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["pid"] != first["pid"]
    finally:
        run_labctl("stop", f"--pidfile={pidfile}")


def test_daemon_names_the_process_that_holds_its_port(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        proc = run_labctl("daemon", f"--pidfile={tmp_path / 'x.pid'}", f"--log={tmp_path / 'log'}",
                          f"--wait-port={port}", "--port-free-wait=1", "--",
                          sys.executable, "-c", "pass")
    finally:
        holder.close()
    assert proc.returncode == 1
    assert f"port {port} is already taken by another process: pid {os.getpid()} (" in proc.stderr


def test_daemon_waits_for_a_slow_old_holder_to_let_go_of_its_port(tmp_path: Path) -> None:
    """An old API server still exiting under load holds the port a while after ``stop``: the
    restart waits for it (up to ``--port-free-wait``) instead of failing at once."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    release = threading.Timer(1.5, holder.close)
    release.start()
    pidfile = tmp_path / "l.pid"
    script = tmp_path / "listen.py"
    script.write_text(LISTENER)
    try:
        proc = run_labctl("daemon", f"--pidfile={pidfile}", f"--log={tmp_path / 'log'}",
                          f"--wait-port={port}", "--port-free-wait=20", "--",
                          sys.executable, str(script), str(port))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["changed"] is True
    finally:
        release.cancel()
        holder.close()
        run_labctl("stop", f"--pidfile={pidfile}")
