"""kubespray's ``ip`` is always an address, even for a node the inventory gives by name.

kubespray binds etcd and the API server to ``ip`` and stops when it is not one of the
host's own addresses ("Stop if ip var does not match local ips"), so a DNS name there
breaks the deploy. A node given by name without ``ip:`` gets it from the host itself:
the address of its interface on ``private_cidr``, read over SSH (``ip -o addr show``).
When the host cannot tell (no address, or several, on that network) the error says to
set ``ip:`` in the inventory. Nodes given by address, or with ``ip:``, cost nothing here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence

from nornir.core.task import Result, Task

from kubebastion.cluster import Cluster, Node
from kubebastion.errors import StepError
from kubebastion.report import describe_exception
from kubebastion.runtime import Run
from kubebastion.ssh.remote import run
from kubebastion.ssh.shell import shell_for

ADDRESSES_COMMAND = "ip -o addr show"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def parse_addresses(stdout: str) -> list[Interface]:
    """The host's addresses from ``ip -o addr show`` (one line per address)."""
    found: list[Interface] = []
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("inet", "inet6"):
            try:
                found.append(ipaddress.ip_interface(fields[3]))
            except ValueError:
                continue
    return found


def pick_private_ip(node: Node, addresses: Sequence[Interface], network: Network) -> str:
    """The one address of ``node`` on ``network``; an error naming the fix otherwise."""
    inside = [a for a in addresses if a.ip in network]
    if len(inside) == 1:
        return str(inside[0].ip)
    listed = ", ".join(str(a) for a in addresses if not a.ip.is_loopback) or "none"
    what = ("none of its addresses" if not inside
            else f"{len(inside)} of its addresses ({', '.join(str(a) for a in inside)})")
    verb = "is" if not inside else "are"
    raise StepError(f"host {node.name!r} is given by name ({node.address}) without ip, and "
                    f"{what} {verb} on private_cidr {network} (it has: {listed}): set ip: (its "
                    "address on the private network) in hosts.yaml")


def read_node_ip(task: Task, node: Node, network: Network) -> Result:
    """The node's address on the private network, read from the node."""
    stdout = run(shell_for(task), ADDRESSES_COMMAND, timeout=60).stdout
    return Result(host=task.host, result=pick_private_ip(node, parse_addresses(stdout),
                                                         network))


def with_ips(cluster: Cluster, ips: dict[str, str]) -> Cluster:
    """The cluster with ``ip`` (and a default ``access_ip``) filled in for these nodes."""
    def filled(node: Node) -> Node:
        if node.name not in ips:
            return node
        return dataclasses.replace(node, ip=ips[node.name],
                                   access_ip=node.access_ip or ips[node.name])
    return dataclasses.replace(cluster, nodes=tuple(filled(n) for n in cluster.nodes),
                               etcd=tuple(filled(n) for n in cluster.etcd))


def resolve_node_ips(run_: Run) -> Run:
    """``run_`` with every node's ``ip`` an address (one exec per node given by name)."""
    unresolved = {n.name: n for n in run_.cluster.nodes if not n.ip}
    if not unresolved:
        return run_
    results = run_.nornir.filter(filter_func=lambda h: h.name in unresolved).run(
        task=lambda task: read_node_ip(task, unresolved[task.host.name],
                                       run_.cluster.private_cidr),
        name="node ip", on_failed=True)
    problems, ips = [], {}
    for name in sorted(unresolved):
        result = results[name][0] if name in results else None
        if result is None:
            problems.append(f"host {name!r}: not in this run, cannot read its ip")
        elif result.failed:
            problems.append(describe_exception(result.exception) if result.exception
                            else f"host {name!r}: cannot read its ip")
        else:
            ips[name] = str(result.result)
    if problems:
        raise StepError("; ".join(problems))
    return dataclasses.replace(run_, cluster=with_ips(run_.cluster, ips))
