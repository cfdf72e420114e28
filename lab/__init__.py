"""The built-in lab: real SSH hosts in network namespaces on one Linux machine.

A bastion, control-plane and worker nodes, each a network + mount + UTS namespace
running a real OpenSSH sshd, a private network behind the bastion, and an emulated
internet host, all on 198.18.0.0/15. It exists so every kubebastion step that touches
a host can be tested for real, without VMs or Docker. See DESIGN.md ("The built-in lab").

Public API::

    state = lab.up(name_prefix="kbl", control_planes=1, workers=3)   # -> LabState
    lab.status()                                                      # -> dict
    lab.down()

``state.nornir_config`` is ready for ``InitNornir(config_file=...)`` (and for
``invoke deploy --config ...``: its defaults carry the kubespray settings for the lab).
Several labs can be up at once, one per name prefix, each with its own ``state_dir`` and
``user``; each gets its own operator /30 in 198.18.0.0/24, so read the bastion's address
from ``state.bastion.ssh_address`` (198.18.0.2 only for the default lab, when free).
"""

from lab.hosts import host_exec, restart_sshd
from lab.lifecycle import (
    config_beside,
    down,
    netns_usable,
    preflight,
    replace_host_key,
    status,
    unavailable_reason,
    up,
    write_client_files,
)
from lab.netns import exec_in, pids_in_namespaces, pids_running
from lab.network import http_get_from, link_down, link_up, reset_bastion_egress
from lab.state import (
    DEFAULT_STATE_DIR,
    HIDDEN_IN_HOSTS,
    HostState,
    InetServiceState,
    LabState,
    load_state,
)
from lab.topology import LabError, Topology

__all__ = [
    "DEFAULT_STATE_DIR",
    "HIDDEN_IN_HOSTS",
    "HostState",
    "InetServiceState",
    "LabError",
    "LabState",
    "Topology",
    "config_beside",
    "down",
    "exec_in",
    "host_exec",
    "http_get_from",
    "link_down",
    "link_up",
    "load_state",
    "netns_usable",
    "pids_in_namespaces",
    "pids_running",
    "preflight",
    "replace_host_key",
    "reset_bastion_egress",
    "restart_sshd",
    "status",
    "unavailable_reason",
    "up",
    "write_client_files",
]
