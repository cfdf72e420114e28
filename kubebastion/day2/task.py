"""Day two's Nornir tasks on the bastion: forget a removed node's host key, take our
context out of the bastion's kubeconfig, forget what kubebastion recorded for a reset
cluster. The playbooks themselves run through ``kubespray.task.run_kubespray_playbook``
(``day2.playbooks`` gives each one's options); ``day2.commands`` chains them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nornir.core.task import Result, Task

from kubebastion.cluster import Cluster
from kubebastion.day2 import reset
from kubebastion.day2.nodes import without_nodes
from kubebastion.kubeconfig.merge import dump_kubeconfig, parse_kubeconfig, remove_context
from kubebastion.kubeconfig.remote import MergeFunction, kubeconfig_path, write_merged
from kubebastion.kubeconfig.task import redacted_diff
from kubebastion.kubespray.bastion import BastionFacts
from kubebastion.kubespray.layout import RemoteLayout
from kubebastion.kubespray.settings import KubespraySettings
from kubebastion.kubespray.task import ensure_node_host_keys
from kubebastion.ssh.remote import run
from kubebastion.ssh.shell import shell_for


def forget_node_host_key(task: Task, settings: KubespraySettings, facts: BastionFacts,
                         cluster: Cluster, node: str,
                         operator_known_hosts: Mapping[str, Path]) -> Result:
    """The bastion's known_hosts for ansible without ``node`` (the file is ours, rewritten
    from the remaining nodes' verified keys)."""
    return ensure_node_host_keys(task, settings, facts, without_nodes(cluster, [node]),
                                 operator_known_hosts)


@dataclass(frozen=True)
class ContextRemoval:
    path: str
    context: str
    removed: bool
    backup: str

    @property
    def summary(self) -> str:
        return (f"context {self.context} removed from {self.path}" if self.removed
                else f"no context {self.context} in {self.path}")

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "context": self.context, "removed": self.removed,
                "backup": self.backup, "summary": self.summary}


def _without_context(context: str) -> MergeFunction:
    def merge(current: str, source: str) -> str:
        if not current:
            return current
        existing = parse_kubeconfig(current, source)
        remaining = remove_context(existing, context)
        return current if remaining == existing else dump_kubeconfig(remaining)
    return merge


def remove_kubeconfig_context(task: Task, cluster: Cluster, context: str) -> Result:
    """Our context (and the cluster and user it names) out of the bastion user's
    kubeconfig, written atomically with a backup; every other entry stays byte for byte."""
    shell = shell_for(task)
    path = kubeconfig_path(shell)
    changed, old, new, backup = write_merged(shell, path, _without_context(context),
                                             dry_run=task.is_dry_run(),
                                             keep_backups=cluster.kubeconfig_backups)
    outcome = ContextRemoval(path, context, changed, backup or "")
    return Result(host=task.host, changed=changed, result=outcome,
                  diff=redacted_diff(old, new, path) if changed else "")


def forget_cluster_state(task: Task, settings: KubespraySettings, facts: BastionFacts,
                         cluster: Cluster, everything: bool = False) -> Result:
    """Remove what kubebastion recorded on the bastion for this cluster (``reset``)."""
    paths = reset.state_paths(RemoteLayout.of(settings, facts.home), cluster, everything)
    output = run(shell_for(task), reset.forget_command(paths, task.is_dry_run()))
    gone = reset.Forgotten(tuple(reset.parse_forgotten(output.stdout)))
    verb = "would remove" if task.is_dry_run() else "removed"
    return Result(host=task.host, changed=bool(gone.paths), result=gone,
                  diff="".join(f"{verb} {p}\n" for p in gone.paths))
