"""The lab's shape as plain data: names, roles, addresses, interfaces.

Everything here is pure (no root, no subprocess) so the address plan can be unit-tested
and reasoned about on its own. Every other lab module builds from a :class:`Topology`
instead of recomputing names, which keeps namespace names, interface names, inventory
and known_hosts in agreement by construction.

Addresses come only from 198.18.0.0/15 (RFC 2544, reserved for network testing), so a
lab can never collide with a real network the machine is attached to.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

Role = Literal["bastion", "control_plane", "worker"]

LAB_SPACE = ipaddress.IPv4Network("198.18.0.0/15")

# Operator (root namespace) <-> bastion point-to-point link: one /30 per lab, inside
# OPERATOR_SPACE. The default lab ("kbl") keeps the first /30 (these addresses) when it is
# free; other prefixes take the first /30 no root-namespace interface uses (see
# :func:`operator_network_candidates`), so several labs can be up at once.
DEFAULT_PREFIX = "kbl"
OPERATOR_SPACE = ipaddress.IPv4Network("198.18.0.0/24")
OPERATOR_PREFIXLEN = 30
DEFAULT_OPERATOR_NETWORK = "198.18.0.0/30"
OPERATOR_ADDRESS = "198.18.0.1"  # the default /30's operator side
BASTION_OPERATOR_ADDRESS = "198.18.0.2"  # the default /30's bastion side

# Private network behind the bastion (a bridge inside the bastion namespace).
PRIVATE_CIDR = "198.18.1.0/24"
PRIVATE_PREFIXLEN = 24
BASTION_PRIVATE_ADDRESS = "198.18.1.1"
CONTROL_PLANE_BASE = 10  # k8s-m<i> -> 198.18.1.(10+i)
WORKER_BASE = 100  # k8s-w<i> -> 198.18.1.(100+i)
MAX_CONTROL_PLANES = WORKER_BASE - CONTROL_PLANE_BASE  # 90: keeps the two ranges apart
MAX_WORKERS = 254 - WORKER_BASE + 1  # 155: up to 198.18.1.254, with every control plane
#: Workers past MAX_WORKERS take the control planes' range the lab does not use, from
#: 198.18.1.99 downwards, so a lab of 1 control plane + 199 workers (the benchmark's N =
#: 200) fits the same /24 and no smaller lab's address changes.
MAX_NODES = MAX_CONTROL_PLANES + MAX_WORKERS  # 245

# Bastion uplink to the emulated internet.
UPLINK_PREFIXLEN = 24
INET_UPLINK_ADDRESS = "198.18.2.1"
BASTION_UPLINK_ADDRESS = "198.18.2.2"

# Single-NIC labs (the common cloud bastion: one NIC on the private subnet, a 1:1 NAT public
# address in front): the emulated internet sits on the private subnet as the subnet's
# router, at this address, and the bastion's default route points at it.
EDGE_ADDRESS = "198.18.1.2"
EDGE_BRIDGE_PORT = "p-inet"

# The emulated internet host and its HTTP echo-source service.
INTERNET_HOST_ADDRESS = "198.19.0.1"
INTERNET_SERVICE_PORT = 80

SSH_PORT = 22

# Interface names inside the namespaces. The only name in the root namespace is
# "<prefix>-op"; Linux limits interface names to 15 characters.
BASTION_OPERATOR_IFACE = "op0"
BASTION_UPLINK_IFACE = "wan0"
BASTION_BRIDGE_IFACE = "priv0"
NODE_IFACE = "eth0"
INET_IFACE = "eth0"
IFNAMSIZ_MAX = 15

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")


class LabError(RuntimeError):
    """A lab operation failed; the message says what and, when known, how to fix it."""


@dataclass(frozen=True)
class HostPlan:
    """One SSH host of the lab (bastion or node).

    ``ssh_address`` is what the inventory calls ``hostname``: the bastion's operator-side
    address, or a node's private address (reached through the bastion).
    ``uplink_port`` is, for a node, the name of its veth end plugged into the bastion's
    bridge (inside the bastion namespace).
    """

    name: str
    role: Role
    namespace: str
    addresses: tuple[str, ...]
    ssh_address: str
    private_address: str
    bridge_port: str | None = None


@dataclass(frozen=True)
class Topology:
    """The full plan for one lab: derived only from prefix, sizes, the operator /30 and
    whether the bastion has one NIC (``single_nic``: no uplink of its own; the internet is
    reached through the private network, see EDGE_ADDRESS)."""

    prefix: str
    control_planes: int
    workers: int
    operator_network: str = DEFAULT_OPERATOR_NETWORK
    single_nic: bool = False

    def __post_init__(self) -> None:
        validate_sizes(self.prefix, self.control_planes, self.workers)
        validate_operator_network(self.operator_network)

    @property
    def operator_iface(self) -> str:
        """Root-namespace end of the operator<->bastion veth (the lab's only root link)."""
        return f"{self.prefix}-op"

    @property
    def operator_address(self) -> str:
        """The root-namespace side of the operator /30 (its first host address)."""
        return str(ipaddress.IPv4Network(self.operator_network).network_address + 1)

    @property
    def bastion_operator_address(self) -> str:
        """The bastion's side of the operator /30: what the inventory calls its hostname."""
        return str(ipaddress.IPv4Network(self.operator_network).network_address + 2)

    @property
    def inet_namespace(self) -> str:
        return f"{self.prefix}-inet"

    @property
    def egress_address(self) -> str:
        """The address the emulated internet sees the bastion's (masqueraded) traffic
        come from: its uplink's, or with one NIC its private address."""
        return BASTION_PRIVATE_ADDRESS if self.single_nic else BASTION_UPLINK_ADDRESS

    def namespace(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    @property
    def bastion(self) -> HostPlan:
        return HostPlan(
            name="bastion",
            role="bastion",
            namespace=self.namespace("bastion"),
            addresses=(
                (self.bastion_operator_address, BASTION_PRIVATE_ADDRESS)
                if self.single_nic
                else (self.bastion_operator_address, BASTION_PRIVATE_ADDRESS,
                      BASTION_UPLINK_ADDRESS)
            ),
            ssh_address=self.bastion_operator_address,
            private_address=BASTION_PRIVATE_ADDRESS,
        )

    @property
    def nodes(self) -> list[HostPlan]:
        out: list[HostPlan] = []
        for i in range(self.control_planes):
            out.append(self._node(f"k8s-m{i}", "control_plane", CONTROL_PLANE_BASE + i))
        for i in range(self.workers):
            out.append(self._node(f"k8s-w{i}", "worker", worker_octet(i)))
        return out

    @property
    def hosts(self) -> list[HostPlan]:
        """Bastion first, then control planes, then workers (inventory order)."""
        return [self.bastion, *self.nodes]

    @property
    def namespaces(self) -> list[str]:
        return [h.namespace for h in self.hosts] + [self.inet_namespace]

    def _node(self, name: str, role: Role, octet: int) -> HostPlan:
        address = f"198.18.1.{octet}"
        return HostPlan(
            name=name,
            role=role,
            namespace=self.namespace(name),
            addresses=(address,),
            ssh_address=address,
            private_address=address,
            bridge_port=f"p-{name}",
        )


def worker_octet(index: int) -> int:
    """Last octet of worker ``index``: 100.. 254, then 99 downwards (see MAX_NODES)."""
    if index < MAX_WORKERS:
        return WORKER_BASE + index
    return WORKER_BASE - 1 - (index - MAX_WORKERS)


def max_workers(control_planes: int) -> int:
    """How many workers fit beside ``control_planes`` in the private /24."""
    return MAX_NODES - control_planes


def validate_prefix(prefix: str) -> None:
    """Reject prefixes that would make bad namespace or interface names.

    Kept short so ``<prefix>-op`` fits in IFNAMSIZ and lowercase-alphanumeric so it is
    safe to use unquoted in ``ip`` batch lines and to match leftovers by pattern.
    """
    if not PREFIX_RE.match(prefix):
        raise LabError(
            f"invalid lab name prefix {prefix!r}: use 1-10 characters, a lowercase letter "
            "followed by lowercase letters or digits"
        )


def validate_operator_network(network: str) -> None:
    """The operator link must be a /30 inside OPERATOR_SPACE (198.18.0.0/24)."""
    try:
        net = ipaddress.IPv4Network(network)
    except ValueError as exc:
        raise LabError(f"invalid operator network {network!r}: {exc}") from None
    if net.prefixlen != OPERATOR_PREFIXLEN or not net.subnet_of(OPERATOR_SPACE):
        raise LabError(
            f"operator network {network!r} must be a /{OPERATOR_PREFIXLEN} inside {OPERATOR_SPACE}"
        )


def operator_network_of(operator_address: str) -> str:
    """The /30 an operator-side address belongs to (how lab.json records the link)."""
    return str(ipaddress.IPv4Interface(f"{operator_address}/{OPERATOR_PREFIXLEN}").network)


def operator_network_candidates(prefix: str, preferred: str | None = None) -> list[str]:
    """Every /30 of OPERATOR_SPACE, in the order a lab with ``prefix`` tries them.

    ``preferred`` (the /30 recorded in lab.json) comes first. The default prefix then
    tries 198.18.0.0/30; other prefixes try it last, so the default lab keeps its
    well-known bastion address 198.18.0.2 whenever it can.
    """
    nets = [str(n) for n in OPERATOR_SPACE.subnets(new_prefix=OPERATOR_PREFIXLEN)]
    if prefix != DEFAULT_PREFIX:
        nets = nets[1:] + nets[:1]
    if preferred is not None:
        validate_operator_network(preferred)
        nets.remove(preferred)
        nets.insert(0, preferred)
    return nets


def choose_operator_network(
    prefix: str, used: list[ipaddress.IPv4Network], preferred: str | None = None
) -> str | None:
    """The first candidate /30 that overlaps none of ``used`` (networks of addresses on
    root-namespace interfaces), or None when every one is taken."""
    for candidate in operator_network_candidates(prefix, preferred):
        net = ipaddress.IPv4Network(candidate)
        if not any(net.overlaps(u) for u in used):
            return candidate
    return None


def validate_user(user: str) -> None:
    if not USER_RE.match(user) or user == "root":
        raise LabError(f"invalid lab user name {user!r}: use a lowercase POSIX user name")


def validate_sizes(prefix: str, control_planes: int, workers: int) -> None:
    validate_prefix(prefix)
    if not 1 <= control_planes <= MAX_CONTROL_PLANES:
        raise LabError(f"control_planes must be 1..{MAX_CONTROL_PLANES}, got {control_planes}")
    most = max_workers(control_planes)
    if not 0 <= workers <= most:
        raise LabError(f"workers must be 0..{most} beside {control_planes} control plane(s) "
                       f"(at most {MAX_NODES} nodes in {PRIVATE_CIDR}), got {workers}")


def namespace_pattern(prefix: str) -> re.Pattern[str]:
    """Names of every namespace a lab with this prefix may have made (for leftover cleanup).

    Deliberately exact so cleanup never touches someone else's namespaces that merely
    share the prefix.
    """
    validate_prefix(prefix)
    return re.compile(rf"^{re.escape(prefix)}-(bastion|inet|k8s-[mw][0-9]+)$")


def hosts_file(topology: Topology) -> str:
    """The /etc/hosts every lab host sees: names resolve and sudo finds its own hostname."""
    lines = [
        "# kubebastion lab hosts file (bind-mounted over /etc/hosts inside each lab host)",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{BASTION_PRIVATE_ADDRESS}\tbastion",
    ]
    lines += [f"{n.private_address}\t{n.name}" for n in topology.nodes]
    lines.append(f"{INTERNET_HOST_ADDRESS}\tinternet")
    return "\n".join(lines) + "\n"
