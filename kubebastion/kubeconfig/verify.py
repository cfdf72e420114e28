"""Seeing the cluster work from the bastion, as operators check by hand.

TCP to the API port, a TLS handshake verified with the kubeconfig's CA, ``/version``,
then every inventory node Ready — all from the bastion's network position (a channel of
its SSH connection), with nothing required on the bastion but sshd.

``verify_ready`` is that check as a Nornir task (run on the bastion): the last part of
``fetch_kubeconfig``, so a user's own Nornir run gets it as ``invoke deploy`` does.
kubespray's playbook ends before the last kubelet reports Ready, so it waits (polls)
up to ``ready_timeout`` before it says which nodes are not Ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from nornir.core import Nornir
from nornir.core.task import Result, Task

from kubebastion.api import (
    ApiCredentials,
    ClusterHealth,
    Opener,
    admin_credentials,
    api_get,
    bastion_opener,
    check_api,
    is_ready,
    poll_health,
    tls_context,
)
from kubebastion.cluster import Cluster
from kubebastion.errors import KubeBastionError, KubeconfigError
from kubebastion.kubeconfig.admin import ADMIN_CONF, admin_conf_on, first_answering
from kubebastion.report import describe_exception
from kubebastion.ssh.remote import quote, run
from kubebastion.ssh.shell import HostShell, shell_for

DEFAULT_READY_TIMEOUT = 120.0
_TIMEOUT = 10.0


@dataclass(frozen=True)
class NodeRow:
    name: str
    status: str
    roles: str
    version: str


@dataclass(frozen=True)
class ReadyReport:
    """What the API said from the bastion, and the node table (``kubectl get nodes`` when
    the bastion has kubectl, else the same rows from the API)."""

    health: ClusterHealth
    nodes: tuple[NodeRow, ...] = ()
    kubectl: str | None = None
    timeout: float = DEFAULT_READY_TIMEOUT

    @property
    def summary(self) -> str:
        if self.health.healthy:
            return self.health.detail
        return f"nodes not Ready after {self.timeout:g} s: {self.health.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {"health": self.health.as_dict(), "nodes": [asdict(n) for n in self.nodes],
                "kubectl": self.kubectl, "summary": self.summary}


def node_rows(node_list: Mapping[str, Any]) -> list[NodeRow]:
    """kubectl's NAME/STATUS/ROLES/VERSION from a NodeList."""
    rows = []
    for item in node_list.get("items") or []:
        metadata = item.get("metadata") or {}
        status = item.get("status") or {}
        roles = sorted(label.split("/", 1)[1] for label in (metadata.get("labels") or {})
                       if label.startswith("node-role.kubernetes.io/"))
        rows.append(NodeRow(
            name=str(metadata.get("name", "")),
            status="Ready" if is_ready(item) else "NotReady",
            roles=",".join(roles) or "<none>",
            version=str((status.get("nodeInfo") or {}).get("kubeletVersion", "")),
        ))
    return rows


def list_nodes(opener: Opener, address: str, port: int, credentials: ApiCredentials
               ) -> list[NodeRow]:
    nodes = api_get(opener, address, port, "/api/v1/nodes", tls_context(credentials))
    return node_rows(nodes)


def kubectl_get_nodes(shell: HostShell, context: str) -> str | None:
    """``kubectl get nodes`` on the host, when kubectl is there (None otherwise)."""
    result = run(shell, "command -v kubectl >/dev/null 2>&1 || exit 127; "
                 f"kubectl --context {quote(context)} get nodes --request-timeout=15s",
                 check=False, timeout=30)
    if result.exit_code == 127:
        return None
    return result.stdout if result.ok else f"kubectl failed: {result.stderr.strip()}"


def verify_ready(task: Task, cluster: Cluster, context: str,
                 credentials: ApiCredentials | None = None,
                 ready_timeout: float = DEFAULT_READY_TIMEOUT,
                 health: ClusterHealth | None = None) -> Result:
    """On the bastion: wait until every inventory node is Ready, then list the nodes.

    ``credentials`` are admin.conf's (read from the first answering control plane when
    not given); ``health``, an answer already in hand (a healthy one saves a look).
    Not all Ready within ``ready_timeout``: a failed result whose summary names them.
    """
    opener = bastion_opener(task.nornir, cluster)
    address = cluster.api_server_address
    expected = [n.name for n in cluster.kubernetes_nodes]
    if credentials is None:
        admin = first_answering(task.nornir, cluster, opener)
        credentials, health = admin.credentials, admin.health
    if health is None or not health.healthy:
        given = credentials
        health = poll_health(
            lambda: check_api(opener, address, cluster.api_port, given, expected),
            ready_timeout)
    if not health.healthy:
        report = ReadyReport(health, timeout=ready_timeout)
        return Result(host=task.host, result=report, failed=True)
    kubectl = kubectl_get_nodes(shell_for(task), context)
    nodes = () if kubectl is not None else tuple(
        list_nodes(opener, address, cluster.api_port, credentials))
    return Result(host=task.host, result=ReadyReport(health, nodes, kubectl, ready_timeout))


def cluster_health(nornir: Nornir, cluster: Cluster, timeout: float = _TIMEOUT
                   ) -> ClusterHealth:
    """The health of the cluster the inventory describes, seen from the bastion, with the
    first control plane's admin.conf; never raises for "not up" (``detail`` says why)."""
    first = cluster.control_planes[0]
    try:
        text = admin_conf_on(nornir, first.name)
    except KubeBastionError as exc:
        return ClusterHealth(False, f"cannot read {ADMIN_CONF} on {first.name}: "
                                    f"{describe_exception(exc)}")
    if text is None:
        return ClusterHealth(False, f"no {ADMIN_CONF} on {first.name}")
    try:
        credentials = admin_credentials(text, f"{first.name}:{ADMIN_CONF}")
    except KubeconfigError as exc:
        return ClusterHealth(False, str(exc))
    return check_api(bastion_opener(nornir, cluster, timeout), first.access_ip,
                     cluster.api_port, credentials, [n.name for n in cluster.kubernetes_nodes],
                     timeout)
