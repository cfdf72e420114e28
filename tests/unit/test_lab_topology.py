"""The lab's address plan past 155 workers (issue 16: the benchmark's N = 200)."""

from __future__ import annotations

import ipaddress

import pytest

from lab.topology import (
    BASTION_PRIVATE_ADDRESS,
    EDGE_ADDRESS,
    MAX_CONTROL_PLANES,
    MAX_NODES,
    MAX_WORKERS,
    PRIVATE_CIDR,
    LabError,
    Topology,
)


def addresses(topo: Topology) -> list[str]:
    return [n.private_address for n in topo.nodes]


def test_labs_up_to_155_workers_keep_their_addresses() -> None:
    topo = Topology("kbt", 3, MAX_WORKERS)
    assert addresses(topo)[:3] == ["198.18.1.10", "198.18.1.11", "198.18.1.12"]
    assert addresses(topo)[3:] == [f"198.18.1.{100 + i}" for i in range(MAX_WORKERS)]


@pytest.mark.parametrize(("control_planes", "workers"), [(1, 199), (1, MAX_NODES - 1),
                                                         (MAX_CONTROL_PLANES, MAX_WORKERS),
                                                         (40, MAX_NODES - 40)],
                         ids=["bench-200", "one-cp-full", "all-cps", "half"])
def test_big_labs_fit_the_private_slash_24_without_collisions(
        control_planes: int, workers: int) -> None:
    topo = Topology("kbt", control_planes, workers)
    taken = addresses(topo)
    private = ipaddress.IPv4Network(PRIVATE_CIDR)
    assert len(set(taken)) == len(taken) == control_planes + workers
    assert all(ipaddress.IPv4Address(a) in private for a in taken)
    assert not {BASTION_PRIVATE_ADDRESS, EDGE_ADDRESS, str(private.network_address),
                str(private.broadcast_address)} & set(taken)
    assert addresses(topo)[control_planes + MAX_WORKERS - 1] == "198.18.1.254"


def test_the_200_node_lab_spills_below_the_workers_range() -> None:
    topo = Topology("kbt", 1, 199)
    assert topo.nodes[156].private_address == "198.18.1.99"  # k8s-w155
    assert topo.nodes[-1].private_address == "198.18.1.56"  # k8s-w198


@pytest.mark.parametrize(("control_planes", "workers"),
                         [(1, MAX_NODES), (MAX_CONTROL_PLANES, MAX_WORKERS + 1)],
                         ids=["one-too-many", "cps-full"])
def test_a_lab_beyond_the_slash_24_is_refused_saying_the_limit(
        control_planes: int, workers: int) -> None:
    with pytest.raises(LabError, match=f"workers must be 0..{MAX_NODES - control_planes} "):
        Topology("kbt", control_planes, workers)
