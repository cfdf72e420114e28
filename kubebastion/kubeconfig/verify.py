"""Seeing the cluster work from the bastion, as operators check by hand.

TCP to the API port, a TLS handshake verified with the kubeconfig's CA, ``/version``,
then every inventory node Ready — all from the bastion's network position (a channel of
its SSH connection), with nothing required on the bastion but sshd.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubebastion.api import (
    ApiCredentials,
    Opener,
    api_get,
    tls_context,
)
from kubebastion.ssh.remote import quote, run
from kubebastion.ssh.shell import HostShell


@dataclass(frozen=True)
class NodeRow:
    name: str
    status: str
    roles: str
    version: str


def node_rows(node_list: Mapping[str, Any]) -> list[NodeRow]:
    """kubectl's NAME/STATUS/ROLES/VERSION from a NodeList."""
    rows = []
    for item in node_list.get("items") or []:
        metadata = item.get("metadata") or {}
        status = item.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        roles = sorted(label.split("/", 1)[1] for label in (metadata.get("labels") or {})
                       if label.startswith("node-role.kubernetes.io/"))
        rows.append(NodeRow(
            name=str(metadata.get("name", "")),
            status="Ready" if ready else "NotReady",
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
