"""kubespray's ip for nodes given by name: validation, and the address read from the host."""

from __future__ import annotations

import ipaddress

import pytest

from kubebastion.cluster import RawHost, build_cluster
from kubebastion.errors import InventoryError, StepError
from kubebastion.kubespray.inventory import render_kubespray_inventory
from kubebastion.node_ips import parse_addresses, pick_private_ip, with_ips

#: `ip -o addr show` on a node with a private and a second (storage) network.
CAPTURED = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
2: ens3    inet 10.0.0.20/24 metric 100 brd 10.0.0.255 scope global dynamic ens3\\       valid_lft 3412sec preferred_lft 3412sec
2: ens3    inet6 fe80::f816:3eff:fe2b:1c4d/64 scope link \\       valid_lft forever preferred_lft forever
3: ens4    inet 192.0.2.20/24 brd 192.0.2.255 scope global ens4\\       valid_lft forever preferred_lft forever
"""  # noqa: E501
PRIVATE = ipaddress.ip_network("10.0.0.0/24")


def hosts(**node_data: object) -> list[RawHost]:
    nodes = {"nodes"}
    return [
        RawHost("bastion", "203.0.113.10", "ubuntu", 22, frozenset({"bastion"}),
                {"private_address": "10.0.0.1"}),
        RawHost("k8s-m0", "10.0.0.10", "ubuntu", 22, frozenset({"control_plane", *nodes}),
                {"jump_host": "bastion"}),
        RawHost("k8s-w0", "k8s-w0.example.internal", "ubuntu", 22,
                frozenset({"workers", *nodes}), {"jump_host": "bastion", **node_data}),
    ]


def test_a_name_is_never_kubespray_ip() -> None:
    cluster = build_cluster(hosts(), {"private_cidr": "10.0.0.0/24"})
    node = cluster.node("k8s-w0")
    assert node.address == "k8s-w0.example.internal"
    assert (node.ip, node.access_ip) == ("", "")  # read from the host before kubespray
    with pytest.raises(StepError, match="k8s-w0's ip is not known yet"):
        render_kubespray_inventory(cluster)


def test_the_inventory_ip_is_used_as_is() -> None:
    node = build_cluster(hosts(ip="10.0.0.20"), {}).node("k8s-w0")
    assert (node.ip, node.access_ip) == ("10.0.0.20", "10.0.0.20")


def test_ip_must_be_an_address() -> None:
    with pytest.raises(InventoryError) as info:
        build_cluster(hosts(ip="k8s-w0.example.internal"), {"private_cidr": "10.0.0.0/24"})
    assert ("host 'k8s-w0': ip 'k8s-w0.example.internal' must be an IP address (kubespray "
            "binds etcd and the API server to it)") in info.value.problems


def test_names_without_private_cidr_are_refused_before_any_ssh() -> None:
    with pytest.raises(InventoryError) as info:
        build_cluster(hosts(), {})
    assert any(p.startswith("private_cidr is not set and cannot be derived")
               for p in info.value.problems)


def test_the_address_on_the_private_network_is_picked() -> None:
    cluster = build_cluster(hosts(), {"private_cidr": "10.0.0.0/24"})
    addresses = parse_addresses(CAPTURED)
    assert [str(a) for a in addresses] == ["127.0.0.1/8", "::1/128", "10.0.0.20/24",
                                           "fe80::f816:3eff:fe2b:1c4d/64", "192.0.2.20/24"]
    ip = pick_private_ip(cluster.node("k8s-w0"), addresses, PRIVATE)
    assert ip == "10.0.0.20"
    resolved = with_ips(cluster, {"k8s-w0": ip})
    node = resolved.node("k8s-w0")
    assert (node.address, node.ip, node.access_ip) == (
        "k8s-w0.example.internal", "10.0.0.20", "10.0.0.20")
    hosts_yaml = render_kubespray_inventory(resolved)["hosts.yaml"]
    assert "ansible_host: k8s-w0.example.internal\n      ip: 10.0.0.20\n" in hosts_yaml


@pytest.mark.parametrize(("network", "message"), [
    ("10.9.0.0/24", "none of its addresses is on private_cidr 10.9.0.0/24 (it has: "
                    "10.0.0.20/24, fe80::f816:3eff:fe2b:1c4d/64, 192.0.2.20/24)"),
    ("0.0.0.0/0", "3 of its addresses (127.0.0.1/8, 10.0.0.20/24, 192.0.2.20/24) are on "
                  "private_cidr 0.0.0.0/0"),
], ids=["none", "several"])
def test_when_the_host_cannot_tell_the_error_says_set_ip(network: str, message: str) -> None:
    cluster = build_cluster(hosts(), {"private_cidr": "10.0.0.0/24"})
    with pytest.raises(StepError) as info:
        pick_private_ip(cluster.node("k8s-w0"), parse_addresses(CAPTURED),
                        ipaddress.ip_network(network))
    assert message in str(info.value)
    assert str(info.value).endswith("set ip: (its address on the private network) in "
                                    "hosts.yaml")
