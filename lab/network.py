"""Namespaces, links, addresses and routes of the lab, plus the inet service.

Built with a handful of ``ip -batch`` runs (one for the root namespace, one per lab
namespace, run in parallel) so a 1+60 lab is wired in well under a second.

The root namespace gets exactly one thing: the ``<prefix>-op`` veth with the first address
of the lab's operator /30 (198.18.0.1/30 for the default lab; each lab has its own /30 in
198.18.0.0/24) and IPv6 address generation off, so not even a link-local route appears.
No route to the private network is ever added there: the operator reaches nodes only by
SSH through the bastion. No lab namespace has a route out of the machine: the bastion's
default route points at the inet namespace, which itself has no default route.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.netns import (
    exec_in,
    ip_batch,
    link_exists,
    namespace_exists,
    run,
    runs_in_namespace,
    wait_for_pidfile,
)
from lab.state import InetServiceState, LabState
from lab.topology import (
    BASTION_BRIDGE_IFACE,
    BASTION_OPERATOR_IFACE,
    BASTION_PRIVATE_ADDRESS,
    BASTION_UPLINK_ADDRESS,
    BASTION_UPLINK_IFACE,
    EDGE_ADDRESS,
    EDGE_BRIDGE_PORT,
    INET_IFACE,
    INET_UPLINK_ADDRESS,
    INTERNET_HOST_ADDRESS,
    INTERNET_SERVICE_PORT,
    NODE_IFACE,
    OPERATOR_PREFIXLEN,
    PRIVATE_CIDR,
    PRIVATE_PREFIXLEN,
    UPLINK_PREFIXLEN,
    LabError,
    Topology,
)

SYSTEM_PYTHON = "/usr/bin/python3"
INET_SCRIPT = Path(__file__).resolve().parent / "inet_service.py"
PARALLEL = 8


def root_ipv4_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    """(interface, network) of every IPv4 address in the root namespace."""
    out = run(["ip", "-o", "-4", "addr", "show"], check=False).stdout
    found: list[tuple[str, ipaddress.IPv4Network]] = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            try:
                net = ipaddress.IPv4Interface(fields[3]).network
            except ValueError:
                continue
            found.append((fields[1].split("@")[0], net))
    return found


def operator_network_users(network: str, ignore: set[str] | None = None) -> list[str]:
    """Root-namespace interfaces (other than ``ignore``) whose addresses overlap ``network``."""
    net = ipaddress.IPv4Network(network)
    skip = ignore or set()
    return sorted({i for i, n in root_ipv4_networks() if i not in skip and n.overlaps(net)})


def build(topology: Topology) -> None:
    """Create every namespace and link of a lab that does not exist yet.

    Call with :data:`lab.lock.MACHINE_LOCK` held from choosing the operator /30 until
    this returns, so two labs being built at once cannot pick the same /30.
    """
    op = topology.operator_iface
    users = operator_network_users(topology.operator_network, {op})
    if users:
        raise LabError(
            f"operator network {topology.operator_network} is already used by root-namespace "
            f"interface(s) {', '.join(users)} (another lab?)"
        )
    bastion = topology.bastion.namespace
    inet = topology.inet_namespace
    root = [f"netns add {ns}" for ns in topology.namespaces]
    # The emulated internet: on a link of the bastion's own (its uplink), or, single-NIC,
    # plugged into the private bridge like the nodes (a cloud subnet's router).
    inet_end = EDGE_BRIDGE_PORT if topology.single_nic else BASTION_UPLINK_IFACE
    root += [
        f"link add name {op} type veth peer name {BASTION_OPERATOR_IFACE} netns {bastion}",
        f"link set dev {op} addrgenmode none",
        f"link add name {inet_end} netns {bastion} type veth "
        f"peer name {INET_IFACE} netns {inet}",
    ]
    for node in topology.nodes:
        root.append(
            f"link add name {node.bridge_port} netns {bastion} type veth "
            f"peer name {NODE_IFACE} netns {node.namespace}"
        )
    root += [
        f"addr add {topology.operator_address}/{OPERATOR_PREFIXLEN} dev {op}",
        f"link set dev {op} up",
    ]
    ip_batch(root)

    jobs: list[tuple[str, str, bool]] = []  # (namespace, batch text, set ip_forward=0)
    b = [
        "link set dev lo up",
        f"link add name {BASTION_BRIDGE_IFACE} type bridge",
        f"addr add {topology.bastion_operator_address}/{OPERATOR_PREFIXLEN} "
        f"dev {BASTION_OPERATOR_IFACE}",
        f"link set dev {BASTION_OPERATOR_IFACE} up",
        f"addr add {BASTION_PRIVATE_ADDRESS}/{PRIVATE_PREFIXLEN} dev {BASTION_BRIDGE_IFACE}",
        f"link set dev {BASTION_BRIDGE_IFACE} up",
    ]
    if not topology.single_nic:
        b += [
            f"addr add {BASTION_UPLINK_ADDRESS}/{UPLINK_PREFIXLEN} dev {BASTION_UPLINK_IFACE}",
            f"link set dev {BASTION_UPLINK_IFACE} up",
        ]
    for port in [n.bridge_port for n in topology.nodes] + (
            [EDGE_BRIDGE_PORT] if topology.single_nic else []):
        b += [
            f"link set dev {port} master {BASTION_BRIDGE_IFACE}",
            f"link set dev {port} up",
        ]
    gateway = EDGE_ADDRESS if topology.single_nic else INET_UPLINK_ADDRESS
    b.append(f"route add default via {gateway}")
    jobs.append((bastion, "\n".join(b), True))
    inet_address = (f"{EDGE_ADDRESS}/{PRIVATE_PREFIXLEN}" if topology.single_nic
                    else f"{INET_UPLINK_ADDRESS}/{UPLINK_PREFIXLEN}")
    i = [
        "link set dev lo up",
        f"addr add {INTERNET_HOST_ADDRESS}/32 dev lo",
        f"addr add {inet_address} dev {INET_IFACE}",
        f"link set dev {INET_IFACE} up",
    ]
    jobs.append((inet, "\n".join(i), True))
    for node in topology.nodes:
        n = [
            "link set dev lo up",
            f"addr add {node.private_address}/{PRIVATE_PREFIXLEN} dev {NODE_IFACE}",
            f"link set dev {NODE_IFACE} up",
            f"route add default via {BASTION_PRIVATE_ADDRESS}",
        ]
        jobs.append((node.namespace, "\n".join(n), False))

    def configure(job: tuple[str, str, bool]) -> None:
        ns, batch, no_forward = job
        if no_forward:
            # New namespaces may inherit ip_forward=1 from the root namespace
            # (net.core.devconf_inherit_init_net); the lab starts with the classic
            # failure: forwarding off on the bastion. Written from inside the namespace.
            exec_in(
                ns,
                ["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward && exec ip -batch -"],
                input=batch + "\n",
                check=True,
            )
        else:
            ip_batch(batch.splitlines(), ns=ns)

    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(configure, jobs))
    if topology.single_nic:
        exec_in(inet, ["nft", "-f", "-"], input=edge_ruleset(), check=True)


def edge_ruleset() -> str:
    """What makes the single-NIC lab's internet a cloud edge with 1:1 NAT: only the
    bastion's address has a public mapping, so packets from any other private address
    (a node's own, not masqueraded) go nowhere, as on AWS, GCP, Azure or OpenStack for an
    instance without a public address."""
    return f"""table ip kubebastion_lab_edge {{
	chain input {{
		type filter hook input priority filter; policy accept;
		ip saddr {PRIVATE_CIDR} ip saddr != {BASTION_PRIVATE_ADDRESS} drop
	}}
}}
"""


def teardown(topology_prefix: str, namespaces: list[str]) -> None:
    """Delete the root veth and the given namespaces (their links go with them)."""
    op = f"{topology_prefix}-op"
    if link_exists(op):
        run(["ip", "link", "del", "dev", op], check=False)
    present = [ns for ns in namespaces if namespace_exists(ns)]
    if present:
        ip_batch([f"netns del {ns}" for ns in present])


def root_link_ok(topology: Topology) -> bool:
    """The operator veth exists, is up, and carries the lab's operator address (.1 of its /30)."""
    op = topology.operator_iface
    if not link_exists(op):
        return False
    out = run(["ip", "-o", "-4", "addr", "show", "dev", op], check=False).stdout
    want = f"{topology.operator_address}/{OPERATOR_PREFIXLEN}"
    return want in out.split() and _flag_up(op)


def _flag_up(ifname: str) -> bool:
    try:
        flags = int(Path(f"/sys/class/net/{ifname}/flags").read_text(), 16)
    except (OSError, ValueError):
        return False
    return bool(flags & 0x1)


def _link_target(state: LabState, name: str) -> tuple[str, str]:
    """(namespace, interface) to flip for ``link_down/up(name)``.

    Always the side whose only routes are connected routes, so bringing it back up
    restores reachability without re-adding routes: the bastion's bridge port for a node,
    the bastion's operator-facing end for the bastion, inet's end for the uplink.
    """
    topo = state.topology
    if name == "bastion":
        return topo.bastion.namespace, BASTION_OPERATOR_IFACE
    if name in ("inet", "uplink"):
        return topo.inet_namespace, INET_IFACE
    for node in topo.nodes:
        if node.name == name and node.bridge_port is not None:
            return topo.bastion.namespace, node.bridge_port
    raise LabError(f"no lab host {name!r}")


def link_down(state: LabState, name: str) -> None:
    """Cut a host off: a node from the private bridge, the bastion from the operator,
    or (``"inet"``) the bastion's uplink to the emulated internet."""
    ns, ifname = _link_target(state, name)
    ip_batch([f"link set dev {ifname} down"], ns=ns)


def link_up(state: LabState, name: str) -> None:
    """Undo :func:`link_down`."""
    ns, ifname = _link_target(state, name)
    ip_batch([f"link set dev {ifname} up"], ns=ns)


def bastion_links_down(topology: Topology) -> list[str]:
    """Links in the bastion and inet namespaces that are administratively down."""
    down: list[str] = []
    for ns in (topology.bastion.namespace, topology.inet_namespace):
        out = exec_in(ns, ["ip", "-o", "link", "show"], timeout=10).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            ifname = parts[1].rstrip(":").split("@")[0]
            flags = parts[2].strip("<>").split(",")
            if "UP" not in flags:
                down.append(f"{ns}:{ifname}")
    return down


def reset_bastion_egress(state: LabState) -> None:
    """Put the bastion back to the lab's starting point: forwarding off, no NAT rules,
    and no persisted sysctl/systemd files in the bastion's private /etc copies.

    For tests that exercise the NAT step more than once in one lab session.
    """
    ns = state.bastion.namespace
    exec_in(ns, ["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"], check=True)
    exec_in(ns, ["nft", "flush", "ruleset"], check=True)
    for sub in ("etc-sysctl.d", "etc-systemd-system"):
        d = state.bastion.host_dir / sub
        for entry in d.iterdir() if d.is_dir() else []:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


# --- the emulated internet host's service -------------------------------------------------


def start_inet_service(topology: Topology, state_dir: Path) -> InetServiceState:
    """Start the HTTP echo-source service on 198.19.0.1:80 inside the inet namespace.

    Double-forked through ``sh -c '... &'`` so it is not our child: it must outlive the
    ``lab up`` process and never linger as our zombie.
    """
    ns = topology.inet_namespace
    d = state_dir / "inet"
    d.mkdir(parents=True, exist_ok=True)
    pidfile = d / "service.pid"
    pidfile.unlink(missing_ok=True)
    cmd = (
        f"setsid {SYSTEM_PYTHON} -I {INET_SCRIPT} {INTERNET_HOST_ADDRESS} "
        f"{INTERNET_SERVICE_PORT} {pidfile} </dev/null >>{d / 'service.log'} 2>&1 &"
    )
    for p in (INET_SCRIPT, d):
        if any(c.isspace() for c in str(p)):
            raise LabError(f"path with whitespace not supported: {p}")
    exec_in(ns, ["sh", "-c", cmd], check=True, timeout=10)
    pid = wait_for_pidfile(pidfile, ns, 10)
    if pid is not None:
        return InetServiceState(ns, INTERNET_HOST_ADDRESS, INTERNET_SERVICE_PORT, pid)
    log = (d / "service.log").read_text() if (d / "service.log").exists() else ""
    raise LabError(f"inet service did not start in {ns}: {log[-500:]}")


def inet_service_running(inet: InetServiceState) -> bool:
    return _is_inet_service(inet.pid, inet.namespace)


def _is_inet_service(pid: int, namespace: str) -> bool:
    return runs_in_namespace(pid, namespace, str(INET_SCRIPT))


def adopt_inet_service(inet: InetServiceState, state_dir: Path) -> bool:
    """Like :func:`lab.hosts.adopt_running_sshd`: trust the service's pid file over a stale pid."""
    if inet_service_running(inet):
        return True
    try:
        pid = int((state_dir / "inet" / "service.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    if _is_inet_service(pid, inet.namespace):
        inet.pid = pid
        return True
    return False


def stop_inet_service(inet: InetServiceState) -> None:
    if inet_service_running(inet):
        os.kill(inet.pid, 15)


def http_get_from(ns: str, url: str, timeout: float = 3.0) -> subprocess.CompletedProcess[str]:
    """``curl`` a URL from inside a lab namespace, bounded by ``timeout`` seconds."""
    return exec_in(
        ns,
        ["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout), url],
        timeout=timeout + 5,
    )
