"""Day two's node planning: additions compared with the last run's groups, removals and
what kubespray refuses (v2.31.0 docs/operations/nodes.md), each case a row of data."""

from __future__ import annotations

from typing import Any

import pytest

from kubebastion.cluster import Cluster, RawHost, build_cluster
from kubebastion.day2.nodes import (
    Additions,
    Groups,
    NodeChangeRefused,
    pending_additions,
    plan_additions,
    plan_removal,
    state_without,
    without_nodes,
)
from kubebastion.kubespray import applied
from kubebastion.kubespray.inventory import render_kubespray_inventory

ROLE_GROUPS = {"cp": "control_plane", "etcd": "etcd", "w": "workers"}


def cluster_of(spec: str) -> Cluster:
    """``"m0:cp,etcd w0:w"``: hosts in inventory order with their roles."""
    hosts = [RawHost("bastion", "198.18.0.2", "ubuntu", 22, frozenset({"bastion"}),
                     {"private_address": "198.18.1.1"})]
    for octet, item in enumerate(spec.split(), start=10):
        name, _, roles = item.partition(":")
        groups = {ROLE_GROUPS[r] for r in roles.split(",")} | {"nodes"}
        hosts.append(RawHost(f"k8s-{name}", f"198.18.1.{octet}", "ubuntu", 22,
                             frozenset(groups), {"jump_host": "bastion"}))
    return build_cluster(hosts, {"cluster_name": "demo"})


def groups(cp: str, etcd: str, workers: str) -> Groups:
    return Groups(*(tuple(f"k8s-{n}" for n in part.split()) for part in (cp, etcd, workers)))


ADDITIONS = [
    ("one worker", groups("m0", "m0", "w0 w1"), groups("m0", "m0", "w0 w1 w2"),
     Additions(workers=("k8s-w2",))),
    ("two workers", groups("m0", "m0", "w0"), groups("m0", "m0", "w0 w1 w2"),
     Additions(workers=("k8s-w1", "k8s-w2"))),
    ("nothing new", groups("m0", "m0", "w0"), groups("m0", "m0", "w0"), None),
    ("control plane appended", groups("m0", "m0", "w0"), groups("m0 m1", "m0", "w0"),
     Additions(control_planes=("k8s-m1",))),
    ("two etcd members appended", groups("m0", "m0", "w0"), groups("m0", "m0 e1 e2", "w0"),
     Additions(etcd=("k8s-e1", "k8s-e2"))),
    # etcd defaults to the control planes; a worker made etcd-only takes etcd over
    ("a worker turned etcd-only", groups("m0", "m0", "w0 w1"), groups("m0", "w1", "w0"), None),
    ("a control plane made a worker too", groups("m0 m1", "m0", "w0"),
     groups("m0", "m0", "w0 m1"), None),
]


@pytest.mark.parametrize(("recorded", "desired", "expected"),
                         [case[1:] for case in ADDITIONS], ids=[c[0] for c in ADDITIONS])
def test_plan_additions(recorded: Groups, desired: Groups, expected: Additions | None) -> None:
    assert plan_additions(recorded, desired) == expected


REFUSED_ADDITIONS = [
    ("new first control plane", groups("m0", "m0", "w0"), groups("m1 m0", "m0", "w0"),
     "k8s-m1 would become the first control plane"),
    ("control plane in the middle", groups("m0 m1", "m0", "w0"),
     groups("m0 m2 m1", "m0", "w0"), "must be appended at the end of kube_control_plane"),
    ("new first etcd member", groups("m0", "m0", "w0"), groups("m0", "e1 m0 e2", "w0"),
     "k8s-e1 would become the first etcd member"),
    ("worker removed from the inventory", groups("m0", "m0", "w0 w1"),
     groups("m0", "m0", "w0"), "k8s-w1 was in the cluster's last run but is no longer in "
     "the inventory"),
]


@pytest.mark.parametrize(("recorded", "desired", "message"),
                         [case[1:] for case in REFUSED_ADDITIONS],
                         ids=[c[0] for c in REFUSED_ADDITIONS])
def test_plan_additions_refusals(recorded: Groups, desired: Groups, message: str) -> None:
    with pytest.raises(NodeChangeRefused, match=message):
        plan_additions(recorded, desired)


def test_groups_round_trip_through_the_record() -> None:
    cluster = cluster_of("m0:cp,w w0:w w1:w")
    text = Groups.of(cluster).as_text()
    assert Groups.from_record({"groups": text}) == Groups(("k8s-m0",), ("k8s-m0",),
                                                           ("k8s-m0", "k8s-w0", "k8s-w1"))
    assert Groups.from_record({}) is None
    assert Groups.from_record({"groups": "not json"}) is None
    assert Groups.from_record(None) is None


def desired_for(cluster: Cluster, **changes: Any) -> dict[str, str]:
    state = dict(source_identity="git:v2.31.0", requirements_sha256="r" * 64,
                 inventory=render_kubespray_inventory(cluster),
                 kubespray_vars=cluster.kubespray_vars, api=":6443", checkout="~/kubespray",
                 groups=Groups.of(cluster).as_text())
    state.update(changes)
    return applied.desired_state(**state)  # type: ignore[arg-type]


def test_a_new_worker_alone_is_pending() -> None:
    before = cluster_of("m0:cp w0:w w1:w")
    after = cluster_of("m0:cp w0:w w1:w w2:w")
    assert pending_additions(desired_for(before), desired_for(after), after) == Additions(
        workers=("k8s-w2",))


def test_a_new_worker_with_other_changes_plays_the_whole_cluster_yml() -> None:
    before = cluster_of("m0:cp w0:w w1:w")
    after = cluster_of("m0:cp w0:w w1:w w2:w")
    changed = desired_for(after, source_identity="git:v2.32.0")
    assert pending_additions(desired_for(before), changed, after) is None


@pytest.mark.parametrize("recorded", [None, {"source": "x"}], ids=["no record", "no groups"])
def test_without_a_usable_record_nothing_is_pending(recorded: dict[str, str] | None) -> None:
    after = cluster_of("m0:cp w0:w w1:w w2:w")
    assert pending_additions(recorded, desired_for(after), after) is None


def test_the_state_after_removal_is_the_inventory_without_the_node() -> None:
    cluster = cluster_of("m0:cp w0:w w1:w")
    recorded = state_without(desired_for(cluster), cluster, "k8s-w1")
    assert recorded == desired_for(cluster_of("m0:cp w0:w"))
    assert applied.reasons_to_run(recorded, desired_for(cluster_of("m0:cp w0:w"))) == []


def test_without_nodes_drops_them_from_every_group() -> None:
    cluster = without_nodes(cluster_of("m0:cp,etcd m1:cp,etcd m2:cp,etcd w0:w"), ["k8s-m2"])
    assert [n.name for n in cluster.nodes] == ["k8s-m0", "k8s-m1", "k8s-w0"]
    assert [n.name for n in cluster.etcd] == ["k8s-m0", "k8s-m1"]


REMOVALS = [
    ("a worker", "m0:cp w0:w w1:w", "k8s-w1", False, "remove k8s-w1 (worker)"),
    ("an offline worker", "m0:cp w0:w w1:w", "k8s-w0", True,
     "remove k8s-w0 (worker) (offline: no reset, ungraceful removal)"),
    ("a second control plane without etcd", "m0:cp,etcd m1:cp w0:w", "k8s-m1", False,
     "remove k8s-m1 (control plane)"),
]


@pytest.mark.parametrize(("spec", "node", "offline", "described"),
                         [c[1:] for c in REMOVALS], ids=[c[0] for c in REMOVALS])
def test_plan_removal(spec: str, node: str, offline: bool, described: str) -> None:
    assert plan_removal(cluster_of(spec), node, offline=offline).describe() == described


REFUSED_REMOVALS = [
    ("the first control plane", "m0:cp w0:w w1:w", "k8s-m0",
     r"cannot remove the first control plane \(kube_control_plane\[0\]\).*move k8s-m0"),
    ("the first etcd member", "m0:cp m1:cp,etcd e1:etcd e2:etcd", "k8s-m1",
     r"cannot remove the first etcd member \(etcd\[0\]\)"),
    ("an etcd member of three", "m0:cp,etcd m1:cp,etcd m2:cp,etcd", "k8s-m2",
     "would leave 2 etcd members, an even number"),
    ("a host not in the inventory", "m0:cp w0:w", "k8s-w9",
     "'k8s-w9' is not a node of the inventory"),
]


@pytest.mark.parametrize(("spec", "node", "message"), [c[1:] for c in REFUSED_REMOVALS],
                         ids=[c[0] for c in REFUSED_REMOVALS])
def test_plan_removal_refusals(spec: str, node: str, message: str) -> None:
    with pytest.raises(NodeChangeRefused, match=message):
        plan_removal(cluster_of(spec), node)
