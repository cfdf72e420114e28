"""Client-side files the lab hands to kubebastion and to people: inventory, Nornir config,
known_hosts, ssh_config.

Pure renderers (data in, text out) so the inventory format can be checked against
docs/inventory.md without building a lab. Paths inside are absolute so the files work
from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubebastion.kubespray.settings import default_wheelhouse
from lab.topology import (
    BASTION_PRIVATE_ADDRESS,
    CONTROL_PLANE_BASE,
    INTERNET_HOST_ADDRESS,
    INTERNET_SERVICE_PORT,
    PRIVATE_CIDR,
    SSH_PORT,
    Topology,
)

CLUSTER_NAME = "lab"
API_PORT = 6443
#: The lab's kubespray stand-in (what ``invoke kubespray`` uploads to the bastion).
KUBESPRAY_STANDIN = Path(__file__).resolve().parent / "kubespray"
#: The stand-in's nodes report Ready at once; no need for kubespray's default 180 s.
READY_TIMEOUT = 60
#: k8s-m0's private address (every lab has it).
FIRST_CONTROL_PLANE_ADDRESS = f"198.18.1.{CONTROL_PLANE_BASE}"


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def hosts_yaml(topology: Topology) -> str:
    hosts: dict[str, Any] = {
        "bastion": {
            "hostname": topology.bastion.ssh_address,
            "groups": ["bastion"],
            "data": {"private_address": BASTION_PRIVATE_ADDRESS},
        }
    }
    for node in topology.nodes:
        group = "control_plane" if node.role == "control_plane" else "workers"
        hosts[node.name] = {"hostname": node.ssh_address, "groups": [group]}
    return _dump(hosts)


def groups_yaml() -> str:
    return _dump(
        {
            "bastion": {},
            "nodes": {"data": {"jump_host": "bastion"}},
            "control_plane": {"groups": ["nodes"]},
            "etcd": {"groups": ["nodes"]},
            "workers": {"groups": ["nodes"]},
        }
    )


def defaults_yaml(
    user: str,
    state_dir: Path,
    *,
    kubespray_source: Path = KUBESPRAY_STANDIN,
    wheelhouse: Path | None = None,
) -> str:
    """Inventory defaults, ready for ``invoke kubespray``/``invoke deploy`` without flags:
    ``kubespray:`` uploads the lab's stand-in and builds the bastion's venv from the
    operator's wheelhouse (kubebastion's wheel cache unless given; the bastion is offline),
    with absolute paths, so the file works from any folder."""
    return _dump(
        {
            "username": user,
            "port": SSH_PORT,
            "data": {
                "cluster_name": CLUSTER_NAME,
                "api_port": API_PORT,
                "private_cidr": PRIVATE_CIDR,
                "egress_targets": [f"{INTERNET_HOST_ADDRESS}:{INTERNET_SERVICE_PORT}"],
                "kubespray": {
                    "source": str(kubespray_source.expanduser().resolve()),
                    "wheelhouse": str((wheelhouse or default_wheelhouse()).expanduser().resolve()),
                    "ready_timeout": READY_TIMEOUT,
                },
                "kubespray_vars": {
                    "supplementary_addresses_in_ssl_keys": [FIRST_CONTROL_PLANE_ADDRESS],
                },
            },
            "connection_options": {
                "fabric": {
                    "extras": {
                        "known_hosts": str(state_dir / "known_hosts"),
                        "private_key": str(state_dir / "id_ed25519"),
                    }
                }
            },
        }
    )


def nornir_config_yaml(topology: Topology, state_dir: Path) -> str:
    inv = state_dir / "inventory"
    return _dump(
        {
            "inventory": {
                "plugin": "SimpleInventory",
                "options": {
                    "host_file": str(inv / "hosts.yaml"),
                    "group_file": str(inv / "groups.yaml"),
                    "defaults_file": str(inv / "defaults.yaml"),
                },
            },
            "runner": {
                "plugin": "threaded",
                "options": {"num_workers": max(1, len(topology.hosts))},
            },
            "logging": {"log_file": str(state_dir / "nornir.log")},
        }
    )


def known_hosts_text(topology: Topology, host_public_keys: dict[str, str]) -> str:
    """One line per address a client uses: bastion on both of its sides, nodes privately.

    Plain (unhashed) OpenSSH format, port 22 so no ``[host]:port`` brackets.
    """
    lines: list[str] = []
    bastion_key = host_public_keys["bastion"]
    lines.append(f"{topology.bastion.ssh_address} {bastion_key}")
    lines.append(f"{BASTION_PRIVATE_ADDRESS} {bastion_key}")
    for node in topology.nodes:
        lines.append(f"{node.private_address} {host_public_keys[node.name]}")
    return "\n".join(lines) + "\n"


def ssh_config_text(topology: Topology, user: str, state_dir: Path) -> str:
    """A ready ``ssh -F`` config: ``ssh -F lab/state/ssh_config k8s-w3`` just works.

    Options sit in the config (not on the command line) because the ssh that ProxyJump
    spawns for the bastion hop only inherits ``-F``, not ``-i``/``-o``.
    """
    common = [
        f"    User {user}",
        f"    Port {SSH_PORT}",
        f"    IdentityFile {state_dir / 'id_ed25519'}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {state_dir / 'known_hosts'}",
        "    GlobalKnownHostsFile /dev/null",
        "    StrictHostKeyChecking yes",
        "    UpdateHostKeys no",
        "    BatchMode yes",
        "    ConnectTimeout 10",
        "    LogLevel ERROR",
    ]
    bastion = topology.bastion.ssh_address
    out = [
        "# kubebastion lab ssh client config (generated by lab/files.py)",
        f"Host bastion {bastion}",
        f"    HostName {bastion}",
        "",
    ]
    for node in topology.nodes:
        out += [
            f"Host {node.name} {node.private_address}",
            f"    HostName {node.private_address}",
            f"    ProxyJump {user}@{bastion}",
            "",
        ]
    out += ["Host *", *common, ""]
    return "\n".join(out)
