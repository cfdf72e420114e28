"""The lab API server stand-in and agent on loopback, read by real kubectl and the Python client.

One API server (127.0.0.1, a free port, grace 3 s) with a throwaway CA made by labctl.py,
agents for a control plane and a worker; every process started here is killed at the end.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.test_standin_labctl import (
    AGENT,
    APISERVER,
    HOST_PYTHON,
    labctl,
    make_pki,
    node_cert,
)

KUBECTL = shutil.which("kubectl")
GRACE = 3.0
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="needs the real kubectl")


@dataclass
class Cluster:
    pki: Path
    port: int
    kubeconfig: Path
    home: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_agent(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        if not (self.pki / f"node-{name}.crt").exists():  # a restarted agent keeps its own
            node_cert(self.pki, name)
        argv = [HOST_PYTHON, str(AGENT), f"--name={name}", f"--ca={self.pki / 'ca.crt'}",
                f"--server=https://127.0.0.1:{self.port}", "--interval=0.5",
                f"--cert={self.pki / f'node-{name}.crt'}",
                f"--key={self.pki / f'node-{name}.key'}", *extra]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                stderr=open(self.pki / f"agent-{name}.log", "wb"))  # noqa: SIM115
        self.procs.append(proc)
        return proc

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home)}
        return subprocess.run([KUBECTL, f"--kubeconfig={self.kubeconfig}", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    def context(self, with_cert: str | None = "admin") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if with_cert:
            ctx.load_cert_chain(self.pki / f"{with_cert}.crt", self.pki / f"{with_cert}.key")
        return ctx

    def request(self, method: str, path: str, ctx: ssl.SSLContext,
                body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        try:
            conn.request(method, path, body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def node_rows(cluster: Cluster) -> dict[str, list[str]]:
    out = cluster.kubectl("get", "nodes")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    return {row.split()[0]: row.split() for row in lines[1:]}


def start_apiserver(c: Cluster, *extra: str) -> None:
    """An API server on a free loopback port for c (its port and kubeconfig updated)."""
    pki = c.pki
    log = pki / "apiserver.log"
    log.write_bytes(b"")
    api = subprocess.Popen(
        [HOST_PYTHON, str(APISERVER), "--bind=127.0.0.1", "--port=0", f"--grace-seconds={GRACE}",
         f"--cert={pki / 'apiserver.crt'}", f"--key={pki / 'apiserver.key'}",
         f"--ca={pki / 'ca.crt'}", f"--events={pki / 'events.jsonl'}", *extra],
        stdout=subprocess.DEVNULL, stderr=open(log, "ab"))  # noqa: SIM115
    c.procs.append(api)
    deadline = time.monotonic() + 20
    while not (m := re.search(r"serving on [\d.]+:(\d+)", log.read_text())):
        assert api.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    c.port = int(m.group(1))
    labctl("kubeconfig", "--dir", str(pki), "--server", f"https://127.0.0.1:{c.port}",
           "--out", str(c.kubeconfig))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pki = tmp_path_factory.mktemp("pki")
    make_pki(pki, ["127.0.0.1", "localhost"])
    c = Cluster(pki, 0, pki / "admin.conf", tmp_path_factory.mktemp("home"))
    try:
        start_apiserver(c)
        c.start_agent("cp-0", "--role=control-plane", "--address=198.18.1.10")
        c.start_agent("worker-0", "--address=198.18.1.100")
        wait_for(lambda: all(node_rows(c).get(n, ["", ""])[1] == "Ready"
                             for n in ("cp-0", "worker-0")), 30, "both nodes Ready")
        yield c
    finally:
        for proc in c.procs:
            proc.kill()
            proc.wait(10)


def test_kubectl_get_nodes_shows_status_roles_and_version(cluster: Cluster) -> None:
    rows = node_rows(cluster)
    assert rows["cp-0"][1:3] == ["Ready", "control-plane"]
    assert rows["worker-0"][1:3] == ["Ready", "<none>"]
    assert rows["cp-0"][4] == rows["worker-0"][4] == "v1.35.4"
    assert re.fullmatch(r"\d+s|\d+m\d*s?", rows["cp-0"][3])
    wide = cluster.kubectl("get", "nodes", "-o", "wide")
    assert "INTERNAL-IP" in wide.stdout and "198.18.1.100" in wide.stdout


def test_kubectl_get_node_json(cluster: Cluster) -> None:
    out = cluster.kubectl("get", "node", "cp-0", "-o", "json")
    assert out.returncode == 0, out.stderr
    node = json.loads(out.stdout)
    assert "node-role.kubernetes.io/control-plane" in node["metadata"]["labels"]
    assert node["status"]["conditions"][0]["status"] == "True"
    missing = cluster.kubectl("get", "node", "nope")
    assert missing.returncode != 0 and 'nodes "nope" not found' in missing.stderr


def test_kubectl_version_and_cluster_info(cluster: Cluster) -> None:
    version = cluster.kubectl("version")
    assert version.returncode == 0, version.stderr
    assert "Server Version: v1.35.4" in version.stdout
    info = cluster.kubectl("cluster-info")
    assert info.returncode == 0, info.stderr
    assert f"is running at https://127.0.0.1:{cluster.port}" in info.stdout


def test_python_client_lists_nodes(cluster: Cluster) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api = kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    nodes = {n.metadata.name: n for n in api.list_node().items}
    assert {"cp-0", "worker-0"} <= set(nodes)
    ready = {c.type: c.status for c in nodes["worker-0"].status.conditions}
    assert ready == {"Ready": "True"}
    assert nodes["worker-0"].status.node_info.kubelet_version == "v1.35.4"
    assert api.read_node("cp-0").metadata.labels["kubernetes.io/hostname"] == "cp-0"


def test_requests_without_a_cluster_client_certificate_are_rejected(
        cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        cluster.request("GET", "/api/v1/nodes", cluster.context(with_cert=None))
    make_pki(tmp_path, ["127.0.0.1"])  # another CA: its admin certificate is not trusted
    foreign = cluster.context(with_cert=None)
    foreign.load_cert_chain(tmp_path / "admin.crt", tmp_path / "admin.key")
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        cluster.request("GET", "/api/v1/nodes", foreign)
    assert cluster.request("GET", "/version", cluster.context())[0] == 200


def test_a_node_may_only_heartbeat_for_itself(cluster: Cluster) -> None:
    ctx = cluster.context(with_cert="node-worker-0")
    status, body = cluster.request("PUT", "/lab/v1/nodes/cp-0", ctx, b"{}")
    assert status == 403, body
    assert cluster.request("PUT", "/lab/v1/nodes/worker-0", ctx, b'{"roles": []}')[0] == 200


def test_stopped_agent_turns_the_node_not_ready(cluster: Cluster) -> None:
    agent = cluster.start_agent("gone-0")
    wait_for(lambda: node_rows(cluster).get("gone-0", ["", ""])[1] == "Ready", 20, "Ready")
    agent.terminate()
    agent.wait(10)
    stopped = time.monotonic()
    wait_for(lambda: node_rows(cluster)["gone-0"][1] == "NotReady", GRACE + 15, "NotReady")
    assert time.monotonic() - stopped >= GRACE - 1.0
    assert node_rows(cluster)["worker-0"][1] == "Ready"


def node_events(cluster: Cluster) -> list[dict[str, object]]:
    return [json.loads(line) for line in (cluster.pki / "events.jsonl").read_text().splitlines()]


def test_cordon_drain_and_uncordon_as_kubespray_runs_them(cluster: Cluster) -> None:
    """upgrade/pre-upgrade's and remove_node/pre_remove's kubectl commands, unchanged."""
    ready = cluster.kubectl("get", "node", "worker-0", "-o",
                            "jsonpath={ range .status.conditions[?(@.type == \"Ready\")].status }"
                            "{ @ }{ end }")
    assert ready.stdout.strip() == "True", ready.stderr
    assert cluster.kubectl("cordon", "worker-0").returncode == 0
    unsched = cluster.kubectl("get", "node", "worker-0", "-o", "jsonpath={ .spec.unschedulable }")
    assert unsched.stdout.strip() == "true"
    assert node_rows(cluster)["worker-0"][1] == "Ready,SchedulingDisabled"
    drain = cluster.kubectl("drain", "--force", "--ignore-daemonsets", "--grace-period", "300",
                            "--timeout", "360s", "--delete-emptydir-data", "worker-0")
    assert drain.returncode == 0, drain.stderr
    assert "node/worker-0 drained" in drain.stdout
    assert cluster.kubectl("uncordon", "worker-0").returncode == 0
    assert node_rows(cluster)["worker-0"][1] == "Ready"
    assert [e["event"] for e in node_events(cluster) if e["node"] == "worker-0"][-2:] == [
        "Cordoned", "Uncordoned"]
    attachments = cluster.kubectl("get", "volumeattachments", "-o",
                                  "go-template={{ range .items }}{{ .spec.nodeName }}{{ end }}")
    assert attachments.returncode == 0 and attachments.stdout == "", attachments.stderr


def test_delete_node_forgets_it_until_its_agent_beats_again(cluster: Cluster) -> None:
    agent = cluster.start_agent("doomed-0")
    wait_for(lambda: "doomed-0" in node_rows(cluster), 20, "registered")
    agent.terminate()
    agent.wait(10)
    deleted = cluster.kubectl("delete", "node", "doomed-0")
    assert deleted.returncode == 0, deleted.stderr
    assert 'node "doomed-0" deleted' in deleted.stdout
    assert "doomed-0" not in node_rows(cluster)
    again = cluster.kubectl("delete", "node", "doomed-0")
    assert again.returncode != 0 and 'nodes "doomed-0" not found' in again.stderr
    names = cluster.kubectl("get", "nodes", "-o", "go-template={{ range .items }}"
                            "{{ .metadata.name }}{{ \"\\n\" }}{{ end }}")
    assert "doomed-0" not in names.stdout.split() and "worker-0" in names.stdout.split()
    assert [e["event"] for e in node_events(cluster) if e["node"] == "doomed-0"][-1] == "Deleted"
    cluster.start_agent("doomed-0")  # a kubelet still running registers its node again
    wait_for(lambda: "doomed-0" in node_rows(cluster), 20, "registered again")


def test_only_cluster_admins_change_nodes(cluster: Cluster) -> None:
    ctx = cluster.context(with_cert="node-worker-0")
    code, body = cluster.request("DELETE", "/api/v1/nodes/worker-0", ctx)
    assert code == 403 and b"cannot delete" in body
    assert "worker-0" in node_rows(cluster)


def test_not_ready_report_then_beats_with_a_new_version(cluster: Cluster) -> None:
    """What the stand-in's upgrade does to a node: NotReady at once, Ready with the new
    kubelet version as soon as the restarted agent beats."""
    agent = cluster.start_agent("up-0")
    wait_for(lambda: node_rows(cluster).get("up-0", ["", ""])[1] == "Ready", 20, "Ready")
    agent.terminate()
    agent.wait(10)
    once = subprocess.run(
        [HOST_PYTHON, str(AGENT), "--name=up-0", f"--ca={cluster.pki / 'ca.crt'}",
         f"--server=https://127.0.0.1:{cluster.port}", "--once", "--not-ready",
         f"--cert={cluster.pki / 'node-up-0.crt'}", f"--key={cluster.pki / 'node-up-0.key'}"],
        capture_output=True, text=True, timeout=30)
    assert once.returncode == 0, once.stderr
    assert node_rows(cluster)["up-0"][1] == "NotReady"
    reason = cluster.kubectl("get", "node", "up-0", "-o",
                             "jsonpath={.status.conditions[0].reason}")
    assert reason.stdout == "KubeletNotReady"
    cluster.start_agent("up-0", "--kubelet-version=v1.36.0")
    wait_for(lambda: node_rows(cluster)["up-0"][1:5:3] == ["Ready", "v1.36.0"], 20,
             "Ready at v1.36.0")
    kinds = [e["event"] for e in node_events(cluster) if e["node"] == "up-0"]
    assert kinds[-3:] == ["NotReady", "KubeletVersionChanged", "Ready"]


def test_state_file_keeps_nodes_cordons_and_deletes_across_a_restart(tmp_path: Path) -> None:
    """The stand-in's etcd: an upgrade restarts the API server; what kubectl changed stays."""
    pki = tmp_path / "pki"
    make_pki(pki, ["127.0.0.1"])
    c = Cluster(pki, 0, pki / "admin.conf", tmp_path)
    state = f"--state={tmp_path / 'state.json'}"
    try:
        start_apiserver(c, state)
        agents = [c.start_agent("kept-0"), c.start_agent("gone-0")]
        wait_for(lambda: {"kept-0", "gone-0"} <= set(node_rows(c)), 20, "both registered")
        for agent in agents:
            agent.terminate()
            agent.wait(10)
        assert c.kubectl("cordon", "kept-0").returncode == 0
        assert c.kubectl("delete", "node", "gone-0").returncode == 0
        c.procs[0].terminate()
        c.procs[0].wait(10)
        start_apiserver(c, state)
        rows = node_rows(c)
        assert set(rows) == {"kept-0"}
        assert rows["kept-0"][1] == "Ready,SchedulingDisabled"  # Ready until the grace ends
        wait_for(lambda: node_rows(c)["kept-0"][1] == "NotReady,SchedulingDisabled",
                 GRACE + 15, "NotReady (its agent is gone)")
    finally:
        for proc in c.procs:
            proc.kill()
            proc.wait(10)


def load_apiserver() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab_apiserver", APISERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("seconds", "age"), [
    (0, "0s"), (-5, "0s"), (119.9, "119s"), (120, "2m"), (130, "2m10s"), (599, "9m59s"),
    (600, "10m"), (10799, "179m"), (10800, "3h"), (29000, "8h"), (28799, "7h59m"),
    (172799, "47h"), (172800, "2d"), (200000, "2d7h"), (691200, "8d"),
    (729 * 86400 + 5, "729d"), (730 * 86400, "2y"), (800 * 86400, "2y70d"),
    (2920 * 86400, "8y"), (3000 * 86400, "8y"),
], ids=lambda value: str(value))
def test_ages_read_as_kubectl_shows_them(seconds: float, age: str) -> None:
    """Kubernetes' duration.HumanDuration, step by step (kubectl's AGE column)."""
    assert load_apiserver().human_age(seconds) == age
