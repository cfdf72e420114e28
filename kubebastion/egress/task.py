"""Can every node reach the internet targets kubespray downloads from? And if not, why?

kubespray fails late, at its downloads, with an error that says nothing about NAT; this
check fails early and names the cause. The bastion's facts are read once and handed to
every node's task, so each node costs one command: its default route plus one TCP
connect per target, all targets at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from nornir.core.task import Result, Task

from kubebastion.cluster import Cluster
from kubebastion.egress.diagnose import (
    PROBE_TIMEOUT,
    BastionEgress,
    NodeEgress,
    bastion_egress,
    diagnose,
    egress_probe_command,
    parse_egress_output,
)
from kubebastion.nat.plan import parse_state, state_command
from kubebastion.report import HostOutcome, outcomes
from kubebastion.runtime import Run
from kubebastion.ssh import remote
from kubebastion.ssh.shell import shell_for


@dataclass(frozen=True)
class EgressReport:
    """One node's egress: what it saw and, when something failed, the diagnosis."""

    egress: NodeEgress
    diagnosis: str | None

    @property
    def summary(self) -> str:
        """The diagnosis (why the task failed), or "" when every target answered."""
        return self.diagnosis or ""

    def as_dict(self) -> dict[str, object]:
        return {**self.egress.as_dict(), "diagnosis": self.diagnosis}


def gather_bastion_egress(task: Task, cluster: Cluster) -> Result:
    """The bastion's forwarding, masquerade, private address and platform (needs sudo
    for nft)."""
    shell = shell_for(task)
    output = remote.run(shell, state_command(files=()), sudo=True, timeout=60,
                        display="read the bastion's forwarding state")
    facts = bastion_egress(parse_state(output.stdout), cluster)
    return Result(host=task.host, result=facts, changed=False)


def check_egress(task: Task, cluster: Cluster, bastion: BastionEgress | None) -> Result:
    """Probe every egress target from the task's node; failed with a diagnosis when one
    does not answer. ``bastion`` None (bastion unreadable) skips the bastion's
    causes rather than guessing them."""
    shell = shell_for(task)
    targets = cluster.egress_targets
    output = remote.run(shell, egress_probe_command(targets, PROBE_TIMEOUT),
                        timeout=PROBE_TIMEOUT + 30, display="egress probe")
    egress = parse_egress_output(output.stdout, targets)
    diagnosis = diagnose(egress, bastion, cluster.bastion.private_address,
                         task.host.name)
    return Result(host=task.host, result=EgressReport(egress, diagnosis), changed=False,
                  failed=diagnosis is not None)


def run_egress_check(run: Run) -> list[HostOutcome]:
    """The bastion's facts (one row), then every node's egress (one row each)."""
    cluster = run.cluster
    bastion_name = cluster.bastion.name
    node_names = {node.name for node in cluster.nodes}
    bastion = run.nornir.filter(filter_func=lambda host: host.name == bastion_name)
    bastion_results = bastion.run(task=gather_bastion_egress, name="bastion facts",
                                  cluster=cluster)
    facts: BastionEgress | None = None
    multi = bastion_results.get(bastion_name)
    if multi is not None and not multi.failed and isinstance(multi[0].result, BastionEgress):
        facts = multi[0].result
    nodes = run.nornir.filter(filter_func=lambda host: host.name in node_names)
    node_results = nodes.run(task=check_egress, name="egress", cluster=cluster,
                             bastion=facts)
    return outcomes(bastion_results) + outcomes(node_results)
