"""Which nodes a day-two run adds or removes, and what kubespray refuses or does not
support (kubespray v2.31.0 ``docs/operations/nodes.md``), decided before any playbook.

What the cluster holds is what the last successful playbook was made from: the record
(``kubespray.applied``) keeps kubespray's groups in inventory order. Compared with the
inventory's groups now:

- new hosts only in ``kube_node``: ``scale.yml --limit=<them>``, after ``facts.yml``
  without a limit (its docs: refresh every node's facts before a limited run);
- new control planes or etcd members: ``cluster.yml``, and they must be appended at the
  end of their group (a new first control plane "is not supported and will cause the
  playbook to fail"); then nginx-proxy must be restarted on every host;
- a host gone from the inventory: kubespray removes nodes only with ``remove-node.yml``
  while they are still in the inventory, so that is refused with the way to do it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from kubebastion.cluster import Cluster
from kubebastion.errors import ConfigError
from kubebastion.kubespray import applied
from kubebastion.kubespray.inventory import render_kubespray_inventory

#: The record's key for the groups (not one of ``applied.PARTS``: it never names a reason).
GROUPS_KEY = "groups"

NGINX_PROXY_NOTE = (
    "kubespray's docs (operations/nodes.md): after adding a control plane, restart the "
    "nginx-proxy pod on every host so it reloads its list of API servers: "
    "crictl ps | grep nginx-proxy | awk '{print $1}' | xargs crictl stop")


@dataclass(frozen=True)
class Groups:
    """kubespray's inventory groups, each in inventory order."""

    kube_control_plane: tuple[str, ...]
    etcd: tuple[str, ...]
    kube_node: tuple[str, ...]

    @classmethod
    def of(cls, cluster: Cluster) -> Groups:
        return cls(tuple(n.name for n in cluster.control_planes),
                   tuple(n.name for n in cluster.etcd), tuple(n.name for n in cluster.workers))

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.kube_control_plane + self.etcd + self.kube_node))

    def as_text(self) -> str:
        return json.dumps({"kube_control_plane": list(self.kube_control_plane),
                           "etcd": list(self.etcd), "kube_node": list(self.kube_node)},
                          sort_keys=True)

    @classmethod
    def from_record(cls, record: Mapping[str, str] | None) -> Groups | None:
        """The groups a record was made with; None for a record without them (written
        before kubebastion kept them) or an unreadable one."""
        if not record or GROUPS_KEY not in record:
            return None
        try:
            data = json.loads(record[GROUPS_KEY])
            return cls(*(tuple(str(n) for n in data[key])
                         for key in ("kube_control_plane", "etcd", "kube_node")))
        except (ValueError, KeyError, TypeError):
            return None


class NodeChangeRefused(ConfigError):
    """A node change kubespray does not support; the message says the supported way."""


@dataclass(frozen=True)
class Additions:
    """Hosts in the inventory that the cluster does not have yet."""

    control_planes: tuple[str, ...] = ()
    etcd: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.control_planes + self.etcd + self.workers))

    @property
    def needs_cluster_yml(self) -> bool:
        """kubespray adds control planes and etcd members only with cluster.yml."""
        return bool(self.control_planes or self.etcd)

    def describe(self) -> str:
        return f"add {', '.join(self.nodes)}"


def plan_additions(recorded: Groups, desired: Groups) -> Additions | None:
    """The hosts ``desired`` adds to ``recorded``; None when it adds none, or when a host
    left one of its groups (a change of roles, which only cluster.yml applies). Refused: a
    host removed from the inventory, and control planes or etcd members not appended at
    the end of their group."""
    gone = [h for h in recorded.hosts if h not in desired.hosts]
    if gone:
        names = ", ".join(gone)
        raise NodeChangeRefused(
            f"{names} {'was' if len(gone) == 1 else 'were'} in the cluster's last run but "
            f"{'is' if len(gone) == 1 else 'are'} no longer in the inventory: kubespray "
            "removes a node only with remove-node.yml while the node is still in its "
            f"inventory; put it back and run `invoke remove-node {gone[0]}`, then remove it "
            "from the inventory")
    for group in ("kube_control_plane", "etcd", "kube_node"):
        if set(getattr(recorded, group)) - set(getattr(desired, group)):
            return None  # a host changed roles: not an addition (cluster.yml, as before)
    for group, label in (("kube_control_plane", "control plane"), ("etcd", "etcd member")):
        before, after = getattr(recorded, group), getattr(desired, group)
        if before and after and after[0] != before[0]:
            raise NodeChangeRefused(
                f"{after[0]} would become the first {label} ({group}[0], was {before[0]}): "
                f"kubespray does not support adding a {label} in the first position "
                "(docs/operations/nodes.md); append new ones at the end of the group")
        if after[:len(before)] != before:
            new = [h for h in after if h not in before]
            raise NodeChangeRefused(
                f"{', '.join(new) or 'the inventory'} must be appended at the end of {group} "
                f"(kubespray's docs): keep the existing order {', '.join(before)} first, "
                f"got {', '.join(after)}")
    additions = Additions(
        control_planes=tuple(h for h in desired.kube_control_plane
                             if h not in recorded.kube_control_plane),
        etcd=tuple(h for h in desired.etcd if h not in recorded.etcd),
        workers=tuple(h for h in desired.kube_node if h not in recorded.kube_node))
    return additions if additions.nodes else None


def without_nodes(cluster: Cluster, names: Sequence[str]) -> Cluster:
    """The cluster as if ``names`` were not in the inventory (what it was before they were
    added, or will be once a removed node leaves the inventory)."""
    gone = set(names)
    return replace(cluster, nodes=tuple(n for n in cluster.nodes if n.name not in gone),
                   etcd=tuple(n for n in cluster.etcd if n.name not in gone))


@dataclass(frozen=True)
class Removal:
    node: str
    offline: bool
    etcd_member: bool
    control_plane: bool

    def describe(self) -> str:
        roles = [r for r, yes in (("control plane", self.control_plane),
                                  ("etcd member", self.etcd_member)) if yes] or ["worker"]
        how = " (offline: no reset, ungraceful removal)" if self.offline else ""
        return f"remove {self.node} ({', '.join(roles)}){how}"


_REORDER = ("kubespray cannot remove the first {label} ({group}[0]); the documented way "
            "(docs/operations/nodes.md) is to move {node} to another position in {group} "
            "of the inventory, run `invoke deploy` (cluster.yml) so the cluster learns the "
            "new order, then remove it")


def plan_removal(cluster: Cluster, name: str, *, offline: bool = False) -> Removal:
    """The removal of ``name``, or why kubespray refuses or does not support it."""
    try:
        node = cluster.node(name)
    except KeyError:
        known = ", ".join(n.name for n in cluster.nodes)
        raise NodeChangeRefused(
            f"{name!r} is not a node of the inventory ({known}): kubespray's remove-node.yml "
            "needs the node still in the inventory; if you removed it already, put it back "
            "first") from None
    control_planes, etcd = cluster.control_planes, cluster.etcd
    if control_planes and control_planes[0].name == name:
        raise NodeChangeRefused(_REORDER.format(label="control plane",
                                                group="kube_control_plane", node=name))
    if etcd and etcd[0].name == name:
        raise NodeChangeRefused(_REORDER.format(label="etcd member", group="etcd", node=name))
    etcd_member = any(n.name == name for n in etcd)
    if etcd_member and (len(etcd) - 1) % 2 == 0:
        raise NodeChangeRefused(
            f"removing {name} would leave {len(etcd) - 1} etcd members, an even number, "
            "which kubespray refuses (etcd needs a majority): to replace a member, add the "
            "new one first (docs/operations/nodes.md, \"Adding an etcd node\"), then remove "
            "the old one")
    return Removal(node=name, offline=offline, etcd_member=etcd_member,
                   control_plane=node.is_control_plane)


def pending_additions(recorded: Mapping[str, str] | None, desired: Mapping[str, str],
                      cluster: Cluster) -> Additions | None:
    """The nodes to add when adding them is the only change since the last successful run
    (``recorded``), else None: no record, a record without groups, or other changes too
    (then the whole cluster.yml runs, as before day two). Refusals as ``plan_additions``."""
    before = Groups.from_record(recorded)
    if recorded is None or before is None:
        return None
    additions = plan_additions(before, Groups.of(cluster))
    if additions is None:
        return None
    state = _state_of(desired, without_nodes(cluster, additions.nodes))
    return None if applied.reasons_to_run(recorded, state) else additions


def state_without(desired: Mapping[str, str], cluster: Cluster, node: str) -> dict[str, str]:
    """The state to record once ``node`` is removed: what the inventory renders to when the
    user has taken it out, as the output tells them to (then the next deploy has nothing
    to do)."""
    return _state_of(desired, without_nodes(cluster, [node]))


def _state_of(desired: Mapping[str, str], cluster: Cluster) -> dict[str, str]:
    """``desired`` for ``cluster``'s inventory (its rendered files and its groups)."""
    return applied.with_inventory(desired, render_kubespray_inventory(cluster),
                                  Groups.of(cluster).as_text())
