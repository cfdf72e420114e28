"""Inventory validation: one case per rule, each checked by the problem it must report."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from kubebastion.cluster import RawHost, build_cluster, derive_private_cidr
from kubebastion.errors import InventoryError

NODE_GROUPS = {"nodes"}


def host(name: str, address: str | None, *groups: str, user: str | None = "ubuntu",
         **data: Any) -> RawHost:
    extended = set(groups)
    if extended & {"control_plane", "etcd", "workers"}:
        extended |= NODE_GROUPS
        data.setdefault("jump_host", "bastion")
    return RawHost(name, address, user, 22, frozenset(extended), data)


def classic(**overrides: RawHost) -> list[RawHost]:
    hosts = {
        "bastion": host("bastion", "203.0.113.10", "bastion", private_address="10.0.0.1"),
        "k8s-m0": host("k8s-m0", "10.0.0.10", "control_plane"),
        "k8s-w0": host("k8s-w0", "10.0.0.20", "workers"),
        "k8s-w1": host("k8s-w1", "10.0.0.21", "workers"),
    }
    hosts.update(overrides)
    return list(hosts.values())


def problems(hosts: list[RawHost], **data: Any) -> list[str]:
    with pytest.raises(InventoryError) as info:
        build_cluster(hosts, data)
    return info.value.problems


def test_classic_inventory_builds_the_cluster() -> None:
    cluster = build_cluster(classic(), {"cluster_name": "demo"})
    assert cluster.bastion.name == "bastion"
    assert [n.name for n in cluster.control_planes] == ["k8s-m0"]
    assert [n.name for n in cluster.workers] == ["k8s-w0", "k8s-w1"]
    assert [n.name for n in cluster.etcd] == ["k8s-m0"]  # defaults to the control planes
    assert cluster.private_cidr == ipaddress.ip_network("10.0.0.0/24")
    assert cluster.api_port == 6443
    assert cluster.api_server_address == "10.0.0.10"
    assert str(cluster.egress_targets[0]) == "dl.k8s.io:443"


def test_ip_and_access_ip_default_and_override() -> None:
    hosts = classic(**{"k8s-m0": host("k8s-m0", "10.0.0.10", "control_plane",
                                      ip="10.0.0.10", access_ip="10.0.1.10")})
    cluster = build_cluster(hosts, {"private_cidr": "10.0.0.0/16"})
    node = cluster.node("k8s-m0")
    assert (node.ip, node.access_ip) == ("10.0.0.10", "10.0.1.10")
    assert cluster.api_server_address == "10.0.1.10"


@pytest.mark.parametrize(
    ("hosts", "data", "expected"),
    [
        (classic(bastion=host("bastion", "1.2.3.4", "workers")), {},
         "exactly one host must be in group 'bastion' (found: none)"),
        (classic(b2=host("b2", "203.0.113.11", "bastion")), {},
         "exactly one host must be in group 'bastion' (found: bastion, b2)"),
        ([h for h in classic() if h.name != "k8s-m0"], {},
         "no host in group 'control_plane'"),
        (classic(**{"k8s-m1": host("k8s-m1", "10.0.0.11", "control_plane")}), {},
         "etcd needs an odd number of members, got 2"),
        (classic(**{"k8s-w1": host("k8s-w1", "10.0.0.20", "workers")}), {},
         "share the address 10.0.0.20"),
        (classic(**{"k8s-w1": host("k8s-w1", "10.0.0.21", "workers", ip="10.0.0.20")}), {},
         "share the ip 10.0.0.20"),
        (classic(**{"k8s-w1": host("k8s-w1", None, "workers")}), {},
         "hostname (its address) is missing"),
        (classic(**{"k8s-w1": host("k8s-w1", "10.0.0.21;reboot", "workers")}), {},
         "is not an IP address or DNS name"),
        (classic(**{"K8s_W1": host("K8s_W1", "10.0.0.21", "workers")}), {},
         "name must be a lowercase DNS label"),
        (classic(**{"k8s-w1": host("k8s-w1", "10.0.0.21", "workers", user="$(id)")}), {},
         "is not a valid login name"),
        (classic(**{"k8s-w1": host("k8s-w1", "10.0.0.21", "workers", user=None)}), {},
         "username is missing"),
        (classic(**{"k8s-w1": host("k8s-w1", "10.0.0.21")}), {},
         "is in none of the groups"),
        (classic(bastion=host("bastion", "203.0.113.10", "bastion", "workers")), {},
         "cannot be both the bastion and a node"),
        (classic(**{"k8s-w1": host("k8s-w1", "10.0.0.21", "workers", jump_host="gw")}), {},
         "jump_host 'gw' is not the bastion"),
        (classic(), {"private_cidr": "10.9.0.0/24"}, "outside private_cidr 10.9.0.0/24"),
        (classic(), {"private_cidr": "10.0.0.1/24"}, "is not a network address"),
        (classic(**{"k8s-w1": host("k8s-w1", "node.example", "workers")}), {},
         "private_cidr is not set and cannot be derived"),
        (classic(), {"api_port": 70000}, "api_port 70000 must be a port number"),
        (classic(), {"api_port": "6443"}, "api_port '6443' must be a port number"),
        (classic(), {"cluster_name": "a b;c"}, "cluster_name 'a b;c' must be"),
        (classic(), {"egress_targets": ["github.com"]}, "'github.com' is not host:port"),
        (classic(), {"egress_targets": "github.com:443"}, "must be a list"),
        (classic(), {"api_address": "vip$(x)"}, "api_address 'vip$(x)' is not"),
        (classic(), {"kubespray_vars": ["x"]}, "kubespray_vars must be a mapping"),
        (classic(bastion=host("bastion", "203.0.113.10", "bastion", uplink="eth0; x")), {},
         "uplink 'eth0; x' is not an interface name"),
        (classic(bastion=host("bastion", "203.0.113.10", "bastion", local="yes")), {},
         "local must be true or false"),
    ],
    ids=[
        "no-bastion", "two-bastions", "no-control-plane", "even-etcd", "duplicate-address",
        "duplicate-ip", "missing-address", "hostile-address", "bad-node-name",
        "hostile-user", "missing-user", "no-role", "bastion-is-node", "unknown-jump-host",
        "node-outside-cidr", "cidr-host-bits", "cidr-not-derivable", "api-port-range",
        "api-port-string", "hostile-cluster-name", "egress-no-port", "egress-not-list",
        "hostile-api-address", "kubespray-vars-not-mapping", "hostile-uplink",
        "local-not-bool",
    ],
)
def test_each_rule_reports_its_problem(hosts: list[RawHost], data: dict[str, Any],
                                       expected: str) -> None:
    found = problems(hosts, **data)
    assert any(expected in p for p in found), found


def test_all_problems_are_reported_at_once() -> None:
    hosts = classic(**{"k8s-w1": host("k8s-w1", "bad;addr", "workers", user="x y")})
    found = problems(hosts, api_port=0, cluster_name="", private_cidr="10.0.0.0/24")
    assert len(found) == 4, found


def test_explicit_etcd_group_is_used() -> None:
    hosts = classic(**{
        "k8s-m1": host("k8s-m1", "10.0.0.11", "control_plane", "etcd"),
        "k8s-w0": host("k8s-w0", "10.0.0.20", "workers", "etcd"),
        "k8s-w1": host("k8s-w1", "10.0.0.21", "workers", "etcd"),
    })
    cluster = build_cluster(hosts, {})
    assert sorted(n.name for n in cluster.etcd) == ["k8s-m1", "k8s-w0", "k8s-w1"]


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [(["10.0.0.5", "10.0.0.200"], "10.0.0.0/24"),
     (["10.0.0.5", "10.0.3.9"], "10.0.0.0/22"),
     (["10.0.0.5", "10.9.0.1"], None),
     (["node.example"], None)],
    ids=["same-24", "spans-22", "too-wide", "names-only"],
)
def test_derive_private_cidr(addresses: list[str], expected: str | None) -> None:
    derived = derive_private_cidr(addresses)
    assert (str(derived) if derived else None) == expected


def test_kubeconfig_backups_defaults_to_5_and_must_be_a_positive_whole_number() -> None:
    assert build_cluster(classic(), {}).kubeconfig_backups == 5
    assert build_cluster(classic(), {"kubeconfig_backups": 2}).kubeconfig_backups == 2
    for bad in (0, -1, "3", True):
        assert any("kubeconfig_backups" in p
                   for p in problems(classic(), kubeconfig_backups=bad)), bad


def test_hosts_only_in_etcd_are_not_kubernetes_nodes() -> None:
    """kubespray puts an etcd-only host outside k8s_cluster: no kubelet, never a node; the
    health checks and the Ready wait must not expect it."""
    hosts = classic(**{"k8s-e0": host("k8s-e0", "10.0.0.30", "etcd")})
    cluster = build_cluster(hosts, {})
    assert [n.name for n in cluster.etcd] == ["k8s-e0"]
    assert [n.name for n in cluster.kubernetes_nodes] == ["k8s-m0", "k8s-w0", "k8s-w1"]
