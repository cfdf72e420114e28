"""Step 1: make the bastion the private network's gateway (IPv4 forwarding + masquerade).

Read the bastion in one command, plan from the inventory, diff, then change only what
differs: the files that differ in one upload and one script (``remote.write_files``: each
file atomic), which also enables the unit and applies the rules by running the
same script the boot-time unit runs, so "what `invoke nat` did" and "what a reboot
restores" cannot drift apart. Bad input (unknown uplink) fails before any change. A
bastion without ``nft`` gets ``nftables`` from its package manager first when it can reach
a package source; an offline one fails before any change, saying what to do by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from nornir.core.task import Result, Task

from kubebastion.cluster import Cluster, EgressTarget
from kubebastion.egress.diagnose import egress_probe_command, parse_egress_output
from kubebastion.errors import StepError
from kubebastion.nat.packages import (
    InstallPlan,
    facts_command,
    parse_facts,
    plan_install,
    probe_targets,
)
from kubebastion.nat.plan import (
    BastionState,
    NatPlan,
    change_script,
    file_writes,
    files_diff,
    parse_state,
    plan_nat,
    remove_command,
    rules_diff,
    state_command,
)
from kubebastion.report import HostOutcome, outcomes
from kubebastion.runlock import cluster_lock
from kubebastion.runtime import Run
from kubebastion.ssh import remote
from kubebastion.ssh.shell import HostShell, shell_for


@dataclass(frozen=True)
class NatReport:
    """What configure_nat did, in one sentence, plus the plan's key values."""

    summary: str
    uplink: str = ""
    private_cidr: str = ""
    forward_jump: bool = False
    single_nic: bool = False

    @classmethod
    def of(cls, summary: str, plan: NatPlan | None) -> NatReport:
        if plan is None:
            return cls(summary)
        return cls(summary, plan.uplink, plan.private_cidr, plan.forward_jump,
                   plan.single_nic)

    def as_dict(self) -> dict[str, object]:
        if not self.uplink:  # a removal: there is no plan to describe
            return {"summary": self.summary}
        return {"summary": self.summary, "uplink": self.uplink,
                "private_cidr": self.private_cidr, "forward_jump": self.forward_jump,
                "single_nic": self.single_nic}

    def __str__(self) -> str:
        return self.summary


def read_state(shell: HostShell) -> BastionState:
    result = remote.run(shell, state_command(), sudo=True, timeout=60,
                        display="read the bastion's NAT state")
    return parse_state(result.stdout)


def plan_nft_install(host: str, shell: HostShell) -> InstallPlan:
    """How ``nftables`` gets onto a bastion without ``nft``: its package manager, if a
    package source answers (probed from the bastion); else StepError, before any change."""
    facts = parse_facts(remote.run(shell, facts_command(), timeout=60,
                                   display="read the bastion's package sources").stdout)
    targets: tuple[EgressTarget, ...] = ()
    if facts.manager is not None and not facts.local_source:
        targets = probe_targets(facts)
    reached: list[tuple[EgressTarget, str]] = []
    if targets:
        output = remote.run(shell, egress_probe_command(targets), timeout=60,
                            display="probe the bastion's package mirrors")
        probes = parse_egress_output(output.stdout, targets).probes
        reached = [(t, "" if p.ok else p.error or "failed")
                   for t, p in zip(targets, probes, strict=True)]
    return plan_install(host, facts, reached)


def install_nft(shell: HostShell, install: InstallPlan) -> None:
    remote.run(shell, install.command, sudo=True, timeout=900,
               display=f"{install.manager} install {install.package}")
    if not read_state(shell).nft_present:
        raise StepError(f"{shell.name}: {install.manager} installed {install.package} but "
                        "nft is still not found on the bastion's PATH")


def configure_nat(task: Task, cluster: Cluster, remove: bool = False) -> Result:
    """Make (or with ``remove``, unmake) the task's host, the bastion, the private
    network's NAT gateway; honours Nornir's dry-run flag."""
    if task.host.name != cluster.bastion.name:
        raise StepError(f"{task.host.name}: configure_nat runs on the bastion "
                        f"({cluster.bastion.name}) only")
    shell = shell_for(task)
    state = read_state(shell)
    if remove:
        return _remove(task, shell, state)
    install = None if state.nft_present else plan_nft_install(task.host.name, shell)
    plan = plan_nat(cluster, state)
    files = files_diff(state, plan)
    rules = rules_diff(state, plan)
    diff = (install.diff() if install else "") + files + rules
    unchanged = _unchanged_or_dry_run(task, diff, plan, "NAT already in place", "change")
    if unchanged is not None:
        return unchanged
    if install is not None:
        install_nft(shell, install)
    # Round trips: the state above, one upload, one script, the state again below.
    remote.write_files(shell, file_writes(state, plan), sudo=True,
                       then=change_script(state, plan),
                       display="install the NAT files, enable kubebastion-nat, apply NAT")
    left = rules_diff(read_state(shell), plan)
    if left:
        raise StepError(f"{task.host.name}: NAT was applied but the live state still "
                        f"differs from the wanted one:\n{left}")
    summary = "changed: nftables installed, NAT configured" if install else (
        "changed: NAT configured")
    return Result(host=task.host, changed=True, diff=diff, result=NatReport.of(summary, plan))


def _unchanged_or_dry_run(task: Task, diff: str, plan: NatPlan | None, nothing_to_do: str,
                          verb: str) -> Result | None:
    """The result when there is nothing to do, or when this is a dry run (what would be
    done is the diff); None: go ahead."""
    if not diff:
        return Result(host=task.host, changed=False, diff="",
                      result=NatReport.of(f"no change: {nothing_to_do}", plan))
    if task.is_dry_run():
        return Result(host=task.host, changed=True, diff=diff,
                      result=NatReport.of(f"dry run: would {verb} (see diff)", plan))
    return None


def _remove(task: Task, shell: HostShell, state: BastionState) -> Result:
    diff = files_diff(state, None) + rules_diff(state, None)
    unchanged = _unchanged_or_dry_run(task, diff, None, "no kubebastion NAT to remove",
                                      "remove")
    if unchanged is not None:
        return unchanged
    remote.run(shell, remove_command(state), sudo=True, display="remove kubebastion NAT")
    after = read_state(shell)
    left = files_diff(after, None) + rules_diff(after, None)
    if left:
        raise StepError(f"{task.host.name}: kubebastion's NAT was removed but some of it "
                        f"is still there:\n{left}")
    return Result(host=task.host, changed=True, diff=diff,
                  result=NatReport.of("changed: kubebastion NAT removed", None))


def run_nat(run: Run, *, remove: bool = False) -> list[HostOutcome]:
    """configure_nat on the bastion of ``run`` (dry run if ``run`` was built dry)."""
    name = run.cluster.bastion.name
    bastion = run.nornir.filter(filter_func=lambda host: host.name == name)
    with cluster_lock(run, "nat"):
        results = bastion.run(task=configure_nat, name="nat", cluster=run.cluster,
                              remove=remove)
    return outcomes(results)
