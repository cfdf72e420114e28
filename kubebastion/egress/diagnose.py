"""Can every node reach the internet targets kubespray downloads from? If not, why, and
what fixes it: the pure parts (probe command, parsers, diagnosis).

The diagnosis walks from the node outward and stops at the first cause: the node's route,
the bastion's forwarding, the masquerade, then name resolution on the node, then the
connection itself. Causes the Linux side cannot show (a cloud dropping forwarded packets,
a subnet routed by the provider) get the fix of the platform the bastion is on
(``kubebastion.cloud``). ``kubebastion.egress.task`` runs the commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from kubebastion.cloud import GENERIC, Provider, detect_provider
from kubebastion.cluster import Cluster, EgressTarget
from kubebastion.nat.plan import (
    MARK,
    BastionState,
    masquerade_rules,
    parse_default_route,
    split_sections,
)
from kubebastion.ssh.remote import quote

FORWARDING_OFF = "bastion does not forward (net.ipv4.ip_forward=0)"  # the usual one
NO_MASQUERADE = "no masquerade on the bastion"
NO_DEFAULT_ROUTE = "no default route"
NOT_VIA_BASTION = "default route not via the bastion"
UNREACHABLE = "target unreachable"
NO_RESOLVE = "name does not resolve on"
#: The diagnoses that NAT on the bastion (the ``nat`` command) fixes by itself.
FIXED_BY_NAT = (FORWARDING_OFF, NO_MASQUERADE)
PROBE_TIMEOUT = 3.0
#: The connection reached something that said no: the network path works.
_REFUSED = "Connection refused"


@dataclass(frozen=True)
class BastionEgress:
    """What the nodes' egress depends on, seen from the bastion."""

    ip_forward: int | None
    masquerade: bool
    private_addresses: tuple[str, ...]
    provider: Provider = GENERIC

    def as_dict(self) -> dict[str, object]:
        return {"ip_forward": self.ip_forward, "masquerade": self.masquerade,
                "private_address": ", ".join(self.private_addresses),
                "provider": self.provider.name}


def bastion_egress(state: BastionState, cluster: Cluster) -> BastionEgress:
    cidr = cluster.private_cidr
    private = tuple(str(a.ip) for _, a in state.addresses if a.ip in cidr)
    if not private and cluster.bastion.private_address:
        private = (cluster.bastion.private_address,)
    return BastionEgress(
        ip_forward=state.ip_forward,
        masquerade=bool(masquerade_rules(state.table, str(cidr))),
        private_addresses=private,
        provider=detect_provider(state.dmi),
    )


# Resolves, then connects, every target at once (threads), so a node costs one timeout, not
# one per target; getaddrinfo has no timeout of its own, hence the overall deadline on the
# joins. Each line: target, ok/fail/dns, the error, the address it resolved to.
PROBE_SCRIPT = """\
import socket, sys, threading, time
t = float(sys.argv[1]); a = sys.argv[2:]
targets = list(zip(a[::2], a[1::2])); out = ["fail\\ttimed out\\t"] * len(targets)
def probe(i, host, port):
    try:
        infos = socket.getaddrinfo(host, int(port), 0, socket.SOCK_STREAM)
    except socket.gaierror as e:
        out[i] = "dns\\t" + (e.strerror or "name does not resolve") + "\\t"; return
    end = time.monotonic() + t; err = "no address"; addr = ""
    for family, kind, proto, _, sockaddr in infos:
        addr = sockaddr[0]
        s = socket.socket(family, kind, proto)
        try:
            s.settimeout(max(0.1, end - time.monotonic())); s.connect(sockaddr)
            out[i] = "ok\\t\\t" + addr; return
        except socket.timeout:
            err = "timed out"
        except OSError as e:
            err = e.strerror or type(e).__name__
        finally:
            s.close()
    out[i] = "fail\\t%s\\t%s" % (err, addr)
ths = [threading.Thread(target=probe, args=(i, h, p), daemon=True)
       for i, (h, p) in enumerate(targets)]
for th in ths: th.start()
end = time.monotonic() + t + 2
for th in ths: th.join(max(0.0, end - time.monotonic()))
for (h, p), r in zip(targets, out): print("probe\\t%s:%s\\t%s" % (h, p, r))
"""


def egress_probe_command(targets: Sequence[EgressTarget],
                         timeout: float = PROBE_TIMEOUT) -> str:
    """One command per node: its default route, its resolvers, then every target."""
    args = " ".join(f"{quote(t.host)} {t.port}" for t in targets)
    return (f"printf '{MARK}route\\n'; ip -4 route show default 2>&1 || true; "
            f"printf '{MARK}resolvers\\n'; grep -s '^[[:space:]]*nameserver' "
            f"/etc/resolv.conf || true; "
            f"printf '{MARK}probes\\n'; if command -v python3 >/dev/null 2>&1; then "
            f"python3 -c {quote(PROBE_SCRIPT)} {timeout:g} {args}; else echo python3-missing; fi")


@dataclass(frozen=True)
class Probe:
    target: str
    ok: bool
    error: str = ""
    address: str = ""  # what the target's name resolved to ("" when it did not)
    resolved: bool = True


@dataclass(frozen=True)
class NodeEgress:
    default_via: str | None
    default_dev: str | None
    probes: tuple[Probe, ...]
    python3: bool = True
    resolvers: tuple[str, ...] = ()  # nameserver lines of the node's /etc/resolv.conf

    @property
    def has_default_route(self) -> bool:
        return self.default_dev is not None or self.default_via is not None

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["gateway"] = self.default_via or (f"dev {self.default_dev}"
                                               if self.default_dev else "none")
        data["reached"] = f"{sum(p.ok for p in self.probes)}/{len(self.probes)}"
        return data


def parse_resolvers(text: str) -> tuple[str, ...]:
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(fields[1])
    return tuple(found)


def parse_egress_output(stdout: str, targets: Sequence[EgressTarget]) -> NodeEgress:
    sections = split_sections(stdout)
    via, dev = parse_default_route(sections.get("route", ""))
    probes_text = sections.get("probes", "")
    found: dict[str, Probe] = {}
    for line in probes_text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0] == "probe":
            status = fields[2]
            error = fields[3] if len(fields) > 3 else ""
            address = fields[4] if len(fields) > 4 else ""
            # "name does not resolve": the older probe's wording for a failed lookup.
            resolved = status != "dns" and error != "name does not resolve"
            found[fields[1]] = Probe(fields[1], status == "ok", error, address, resolved)
    python3 = probes_text.strip() != "python3-missing"
    reason = "python3 is missing on the node" if not python3 else "no probe output"
    probes = tuple(found.get(str(t), Probe(str(t), False, reason)) for t in targets)
    return NodeEgress(via, dev, probes, python3, parse_resolvers(sections.get("resolvers", "")))


def _with_fix(cause: str, fix: str) -> str:
    return f"{cause}; fix: {fix}"


def _unreachable(probes: Sequence[Probe], provider: Provider) -> str:
    parts = []
    for p in probes:
        why = p.error or "failed"
        host = p.target.rsplit(":", 1)[0].strip("[]")
        if p.address and p.address != host:
            parts.append(f"{p.target} resolves to {p.address}, connection fails ({why})")
        else:
            parts.append(f"{p.target} ({why})")
    cause = f"{UNREACHABLE}: " + ", ".join(parts)
    if all(p.error == _REFUSED for p in probes):
        return cause  # the target itself answered no: nothing on the way to fix
    return _with_fix(cause, provider.forwarding)


def _unresolved(node_name: str, node: NodeEgress, probes: Sequence[Probe],
                provider: Provider) -> str:
    resolver = ("resolver " + ", ".join(node.resolvers) if node.resolvers
                else "no nameserver in /etc/resolv.conf")
    names = ", ".join(f"{p.target} ({p.error})" if p.error else p.target for p in probes)
    fix = provider.dns if provider is GENERIC else f"{provider.dns}; else {GENERIC.dns}"
    return _with_fix(f"{NO_RESOLVE} {node_name} ({resolver}): {names}", fix)


def nat_fixes(diagnoses: Iterable[str]) -> bool:
    """Whether one of these diagnoses is fixed by NAT on the bastion: the command line
    then names the ``nat`` command, since the diagnosis alone names only the cause."""
    return any(diagnosis in FIXED_BY_NAT for diagnosis in diagnoses)


def diagnose(node: NodeEgress, bastion: BastionEgress | None,
             bastion_address: str | None = None, node_name: str = "the node") -> str | None:
    """None when every target answered; else the first cause found, from the node outward:
    its route, the bastion's forwarding, the masquerade, then the targets themselves (a
    name that does not resolve apart from a connection that fails), with the fix."""
    failed = [p for p in node.probes if not p.ok]
    if not failed:
        return None
    provider = bastion.provider if bastion else GENERIC
    if not node.python3:
        return "cannot probe: python3 is missing on the node"
    if not node.has_default_route:
        return _with_fix(NO_DEFAULT_ROUTE, provider.route)
    gateways = set(bastion.private_addresses) if bastion else set()
    if bastion_address:
        gateways.add(bastion_address)
    if gateways and node.default_via not in gateways:
        where = node.default_via or f"dev {node.default_dev}"
        return _with_fix(f"{NOT_VIA_BASTION} ({where})", provider.route)
    if bastion is not None and bastion.ip_forward is not None and bastion.ip_forward != 1:
        return f"bastion does not forward (net.ipv4.ip_forward={bastion.ip_forward})"
    if bastion is not None and not bastion.masquerade:
        return NO_MASQUERADE
    unresolved = [p for p in failed if not p.resolved]
    unreachable = [p for p in failed if p.resolved]
    causes = []
    if unreachable:
        causes.append(_unreachable(unreachable, provider))
    if unresolved:
        causes.append(_unresolved(node_name, node, unresolved, provider))
    return "; and ".join(causes)
