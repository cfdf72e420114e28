"""kubespray's admin.conf: the admin credentials every later look at the cluster uses.

kubespray writes ``/etc/kubernetes/admin.conf`` on each control plane, readable by root
only, so it is read with sudo and kept here only as long as it is needed (as text, never
in a repr). The first control plane whose copy opens an answering API is the one used:
a control plane that is down, or was never deployed, does not stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from nornir.core import Nornir

from kubebastion.api import ApiCredentials, ClusterHealth, Opener, admin_credentials, check_api
from kubebastion.cluster import Cluster
from kubebastion.errors import KubeBastionError, StepError
from kubebastion.report import describe_exception
from kubebastion.runtime import full_inventory
from kubebastion.ssh.remote import read_file
from kubebastion.ssh.shell import HostShell, shell_for_host

ADMIN_CONF = "/etc/kubernetes/admin.conf"


@dataclass(frozen=True)
class AdminConf:
    """admin.conf as read from one control plane (it holds the admin key: no repr)."""

    control_plane: str
    text: str
    credentials: ApiCredentials
    health: ClusterHealth

    def __repr__(self) -> str:
        return f"AdminConf(control_plane={self.control_plane!r}, ***)"


def read_admin_conf(shell: HostShell) -> str | None:
    """admin.conf's text on the shell's host, None when it is not there."""
    data = read_file(shell, ADMIN_CONF, sudo=True)
    return None if data is None else data.decode()


def admin_conf_on(nornir: Nornir, control_plane: str) -> str | None:
    """:func:`read_admin_conf` on an inventory host (from a task running elsewhere)."""
    host = full_inventory(nornir).hosts[control_plane]
    return read_admin_conf(shell_for_host(host, nornir.config))


def first_answering(nornir: Nornir, cluster: Cluster, opener: Opener) -> AdminConf:
    """admin.conf from the first control plane whose API answers; errors name them all."""
    problems = []
    for node in cluster.control_planes:
        try:
            text = admin_conf_on(nornir, node.name)
        except KubeBastionError as exc:
            problems.append(f"{node.name}: {describe_exception(exc)}")
            continue
        if text is None:
            problems.append(f"{node.name}: no {ADMIN_CONF} (has kubespray run?)")
            continue
        credentials = admin_credentials(text, f"{node.name}:{ADMIN_CONF}")
        health = check_api(opener, node.access_ip, cluster.api_port, credentials,
                           [n.name for n in cluster.kubernetes_nodes])
        if not health.api_version:
            problems.append(f"{node.name}: API not answering: {health.detail}")
            continue
        return AdminConf(node.name, text, credentials, health)
    raise StepError("no healthy control plane to take admin.conf from:\n  "
                    + "\n  ".join(problems))
