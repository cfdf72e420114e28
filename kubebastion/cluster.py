"""The validated cluster model: what the steps need to know, checked before any SSH.

Roles come from Nornir group membership (see docs/inventory.md). Validation collects
every problem and raises one ``InventoryError`` listing them all, so an operator fixes
the inventory in one pass instead of one error per run.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubebastion.errors import InventoryError
from kubebastion.kubespray.apivars import api_var_problems

BASTION, CONTROL_PLANE, ETCD, WORKERS = "bastion", "control_plane", "etcd", "workers"
ROLE_GROUPS = (BASTION, CONTROL_PLANE, ETCD, WORKERS)

#: Hosts kubespray downloads from; the nodes must reach them before the playbook runs.
DEFAULT_EGRESS_TARGETS = (
    "dl.k8s.io:443",
    "registry.k8s.io:443",
    "github.com:443",
    "quay.io:443",
    "registry-1.docker.io:443",
)

_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class RawHost:
    """A host as the inventory gives it: plain values, easy to build in unit tests."""

    name: str
    hostname: str | None
    username: str | None
    port: int | None
    groups: frozenset[str]
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    name: str
    address: str  # what SSH connects to (from the bastion, for nodes behind it)
    ip: str  # kubespray's bind address, always an IP; "" until read from the host (node_ips)
    access_ip: str  # what others use to reach it ("" like ip, until then)
    username: str
    port: int
    roles: frozenset[str]

    @property
    def is_control_plane(self) -> bool:
        return CONTROL_PLANE in self.roles


@dataclass(frozen=True)
class Bastion:
    name: str
    address: str
    username: str
    port: int
    private_address: str | None
    uplink: str | None
    local: bool


@dataclass(frozen=True)
class EgressTarget:
    """A host and port the nodes must reach through the bastion (kubespray downloads from
    it); written and shown as ``host:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Cluster:
    name: str
    bastion: Bastion
    nodes: tuple[Node, ...]
    etcd: tuple[Node, ...]
    private_cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    api_port: int
    api_address: str | None
    egress_targets: tuple[EgressTarget, ...]
    kubespray_vars: Mapping[str, Any]
    #: How many backups of a kubeconfig we change are kept (each holds admin credentials).
    kubeconfig_backups: int = 5

    @property
    def control_planes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if CONTROL_PLANE in n.roles)

    @property
    def workers(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if WORKERS in n.roles)

    @property
    def kubernetes_nodes(self) -> tuple[Node, ...]:
        """kubespray's ``k8s_cluster``: the hosts that run a kubelet and register as
        Kubernetes nodes. A host only in ``etcd`` is outside it and never does."""
        return tuple(n for n in self.nodes if n.roles & {CONTROL_PLANE, WORKERS})

    def node(self, name: str) -> Node:
        for candidate in self.nodes:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def api_server_address(self) -> str:
        """Where clients should reach the API: the VIP if given, else the first control
        plane's access address."""
        return self.api_address or self.control_planes[0].access_ip


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def valid_address(value: object) -> bool:
    """An IP address or a DNS name; nothing a shell could misread."""
    return isinstance(value, str) and (_is_ip(value) or bool(_DNS_NAME.fullmatch(value)))


def parse_egress_target(value: object) -> EgressTarget | None:
    if not isinstance(value, str):
        return None
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not valid_address(host) or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return EgressTarget(host, int(port))


def derive_private_cidr(addresses: Iterable[str]) -> ipaddress.IPv4Network | None:
    """The smallest of /24 … /16 that holds every address; None when an address is a
    name (we cannot know its network) or they span more than a /16."""
    addresses = list(addresses)
    if not addresses or not all(_is_ip(a) for a in addresses):
        return None
    ips = [ipaddress.ip_address(a) for a in addresses]
    if any(ip.version != 4 for ip in ips):
        return None
    for prefix in range(24, 15, -1):
        net = ipaddress.ip_network(f"{ips[0]}/{prefix}", strict=False)
        if all(ip in net for ip in ips):
            return net  # type: ignore[return-value]
    return None


def build_cluster(hosts: Iterable[RawHost], cluster_data: Mapping[str, Any]) -> Cluster:
    """Validate ``hosts`` and cluster-wide data into a ``Cluster``, or raise listing all
    problems."""
    problems: list[str] = []
    hosts = list(hosts)

    name = cluster_data.get("cluster_name", "kubebastion")
    if not isinstance(name, str) or not _CLUSTER_NAME.fullmatch(name):
        problems.append(f"cluster_name {name!r} must be letters, digits, '-' or '_' "
                        "(at most 63, starting with a letter or digit)")
    api_port = cluster_data.get("api_port", 6443)
    if isinstance(api_port, bool) or not isinstance(api_port, int) or not 0 < api_port < 65536:
        problems.append(f"api_port {api_port!r} must be a port number (1-65535)")
        api_port = 6443

    for host in hosts:
        problems.extend(_host_problems(host))

    bastions = [h for h in hosts if BASTION in h.groups]
    if len(bastions) != 1:
        found = ", ".join(h.name for h in bastions) or "none"
        problems.append(f"exactly one host must be in group 'bastion' (found: {found})")
    node_hosts = [h for h in hosts if h.groups & {CONTROL_PLANE, ETCD, WORKERS}]
    for host in hosts:
        if not host.groups & set(ROLE_GROUPS):
            problems.append(f"host {host.name!r} is in none of the groups "
                            f"{', '.join(ROLE_GROUPS)}: give it a role")
        if BASTION in host.groups and host.groups & {CONTROL_PLANE, ETCD, WORKERS}:
            problems.append(f"host {host.name!r} cannot be both the bastion and a node")
    if not any(CONTROL_PLANE in h.groups for h in hosts):
        problems.append("no host in group 'control_plane': kubespray needs at least one")

    nodes = [_node(h) for h in node_hosts]
    _duplicates(problems, "address", [(n.name, n.address) for n in nodes])
    _duplicates(problems, "ip", [(n.name, n.ip) for n in nodes])

    etcd = [n for n in nodes if ETCD in n.roles] or [n for n in nodes if n.is_control_plane]
    if etcd and len(etcd) % 2 == 0:
        problems.append(f"etcd needs an odd number of members, got {len(etcd)} "
                        f"({', '.join(n.name for n in etcd)}): add or remove one")

    bastion_names = {b.name for b in bastions}
    for host in node_hosts:
        jump = host.data.get("jump_host")
        if jump is not None and jump not in bastion_names:
            problems.append(f"host {host.name!r}: jump_host {jump!r} is not the bastion "
                            f"({', '.join(sorted(bastion_names)) or 'none'})")

    cidr = _private_cidr(problems, cluster_data.get("private_cidr"), nodes)
    egress = _egress_targets(problems, cluster_data.get("egress_targets"))
    api_address = cluster_data.get("api_address")
    if api_address is not None and not valid_address(api_address):
        problems.append(f"api_address {api_address!r} is not an IP address or DNS name")
    backups = cluster_data.get("kubeconfig_backups", 5)
    if isinstance(backups, bool) or not isinstance(backups, int) or backups < 1:
        problems.append(f"kubeconfig_backups {backups!r} must be a whole number, at least 1 "
                        "(how many backups of a kubeconfig to keep)")
        backups = 5
    kubespray_vars = cluster_data.get("kubespray_vars", {}) or {}
    if not isinstance(kubespray_vars, Mapping):
        problems.append("kubespray_vars must be a mapping of kubespray variables")
        kubespray_vars = {}
    problems.extend(api_var_problems(api_port, api_address, kubespray_vars))

    if problems:
        raise InventoryError(problems)
    bastion_host = bastions[0]
    bastion = Bastion(
        name=bastion_host.name,
        address=str(bastion_host.hostname),
        username=str(bastion_host.username),
        port=bastion_host.port or 22,
        private_address=bastion_host.data.get("private_address"),
        uplink=bastion_host.data.get("uplink"),
        local=bastion_host.data.get("local") is True,
    )
    assert cidr is not None
    return Cluster(
        name=str(name), bastion=bastion, nodes=tuple(nodes), etcd=tuple(etcd),
        private_cidr=cidr, api_port=int(api_port), api_address=api_address,
        egress_targets=tuple(egress), kubespray_vars=dict(kubespray_vars),
        kubeconfig_backups=backups,
    )


def _host_problems(host: RawHost) -> list[str]:
    problems = []
    label = f"host {host.name!r}"
    if not _NODE_NAME.fullmatch(host.name):
        problems.append(f"{label}: name must be a lowercase DNS label "
                        "(a-z, 0-9, '-'; kubespray uses it as the node name)")
    if not host.hostname:
        problems.append(f"{label}: hostname (its address) is missing")
    elif not valid_address(host.hostname):
        problems.append(f"{label}: hostname {host.hostname!r} is not an IP address or "
                        "DNS name")
    if not host.username:
        problems.append(f"{label}: username is missing (set it in defaults.yaml)")
    elif not _USER.fullmatch(host.username):
        problems.append(f"{label}: username {host.username!r} is not a valid login name")
    if host.port is not None and (isinstance(host.port, bool) or not isinstance(host.port, int)
                                  or not 0 < host.port < 65536):
        problems.append(f"{label}: port {host.port!r} is not a port number")
    for key in ("access_ip", "private_address"):
        value = host.data.get(key)
        if value is not None and not valid_address(value):
            problems.append(f"{label}: {key} {value!r} is not an IP address or DNS name")
    ip = host.data.get("ip")
    if ip is not None and not (isinstance(ip, str) and _is_ip(ip)):
        problems.append(f"{label}: ip {ip!r} must be an IP address (kubespray binds etcd and "
                        "the API server to it)")
    uplink = host.data.get("uplink")
    if uplink is not None and not (isinstance(uplink, str) and _INTERFACE.fullmatch(uplink)):
        problems.append(f"{label}: uplink {uplink!r} is not an interface name")
    local = host.data.get("local")
    if local is not None and not isinstance(local, bool):
        problems.append(f"{label}: local must be true or false, not {local!r}")
    return problems


def _node(host: RawHost) -> Node:
    address = str(host.hostname or "")
    # A name is never kubespray's ip: without ip:, kubebastion.node_ips reads it from the host.
    ip = str(host.data.get("ip") or (address if _is_ip(address) else ""))
    roles = frozenset(host.groups & {CONTROL_PLANE, ETCD, WORKERS})
    return Node(
        name=host.name, address=address, ip=ip,
        access_ip=str(host.data.get("access_ip") or ip),
        username=str(host.username or ""), port=host.port or 22, roles=roles,
    )


def _duplicates(problems: list[str], what: str, pairs: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for name, value in pairs:
        if not value:
            continue
        if value in seen:
            problems.append(f"hosts {seen[value]!r} and {name!r} share the {what} {value}")
        else:
            seen[value] = name


def _private_cidr(problems: list[str], given: object, nodes: list[Node]
                  ) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    ips = [n.ip for n in nodes]
    if given is None:
        derived = derive_private_cidr(ips)
        if derived is None and nodes:
            problems.append("private_cidr is not set and cannot be derived from the node "
                            "addresses (they are names, or span more than a /16): set it")
        return derived or ipaddress.ip_network("0.0.0.0/32")
    try:
        network = ipaddress.ip_network(str(given), strict=True)
    except ValueError:
        problems.append(f"private_cidr {given!r} is not a network address "
                        "(e.g. 10.0.0.0/24, with the host bits zero)")
        return None
    for node in nodes:
        if _is_ip(node.ip) and ipaddress.ip_address(node.ip) not in network:
            problems.append(f"host {node.name!r}: ip {node.ip} is outside private_cidr "
                            f"{network}")
    return network


def _egress_targets(problems: list[str], given: object) -> list[EgressTarget]:
    if given is None:
        given = list(DEFAULT_EGRESS_TARGETS)
    if not isinstance(given, list):
        problems.append("egress_targets must be a list of host:port strings")
        return []
    targets = []
    for value in given:
        target = parse_egress_target(value)
        if target is None:
            problems.append(f"egress target {value!r} is not host:port")
        else:
            targets.append(target)
    return targets
