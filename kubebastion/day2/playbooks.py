"""The command line of each day-two playbook, as kubespray v2.31.0's docs give it.

Every one runs like ``cluster.yml`` (``kubespray.task.run_kubespray_playbook``: in the
checkout's venv on the bastion, host key checking on, ``-b``); only the playbook and its
additions differ. Confirmation prompts are answered here because kubebastion asked the
user already (``skip_confirmation``, ``reset_confirmation``): ansible runs without a
terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubebastion.kubespray.options import FACTS_PLAYBOOK, SCALE_PLAYBOOK, PlaybookOptions

REMOVE_NODE_PLAYBOOK = "remove-node.yml"
UPGRADE_PLAYBOOK = "upgrade-cluster.yml"
RESET_PLAYBOOK = "reset.yml"


def facts_refresh() -> PlaybookOptions:
    """``playbooks/facts.yml`` without a limit: kubespray's docs require every node's facts
    fresh before a limited run (operations/nodes.md, "Adding/replacing a worker node")."""
    return PlaybookOptions(playbook=FACTS_PLAYBOOK)


def scale(nodes: Sequence[str]) -> PlaybookOptions:
    """``scale.yml --limit=<the new workers>``: the other nodes are not touched."""
    return PlaybookOptions(playbook=SCALE_PLAYBOOK, limit=",".join(nodes))


def remove_node(node: str, *, offline: bool = False) -> PlaybookOptions:
    """``remove-node.yml -e node=NAME -e skip_confirmation=yes``; an offline node is not
    reset and may be removed without draining (``reset_nodes=false
    allow_ungraceful_removal=true``, as its docs say)."""
    extra = [f"node={node}", "skip_confirmation=yes"]
    if offline:
        extra += ["reset_nodes=false", "allow_ungraceful_removal=true"]
    return PlaybookOptions(playbook=REMOVE_NODE_PLAYBOOK, extra_vars=tuple(extra))


def upgrade(kube_version: str, serial: int = 1) -> PlaybookOptions:
    """``upgrade-cluster.yml -e kube_version=X -e serial=N``: N nodes at a time, cordoned,
    drained, upgraded and uncordoned (kubespray's default batch is 20% of the nodes;
    kubebastion's is one)."""
    return PlaybookOptions(playbook=UPGRADE_PLAYBOOK,
                           extra_vars=(f"kube_version={kube_version}", f"serial={serial}"))


def reset() -> PlaybookOptions:
    """``reset.yml -e reset_confirmation=yes``, after the user typed the cluster name."""
    return PlaybookOptions(playbook=RESET_PLAYBOOK, extra_vars=("reset_confirmation=yes",))
