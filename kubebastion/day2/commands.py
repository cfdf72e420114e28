"""The day-two sequences behind ``invoke remove-node``, ``upgrade`` and ``reset``.

Each one: plan and refuse before any SSH where the inventory alone decides, take the
cluster's lock, prepare the bastion exactly as ``invoke kubespray`` does (checkout, venv,
inventory, SSH trust with host key checking on), run kubespray's playbook for the job,
then check the outcome through the API and tidy what kubebastion keeps on the bastion.
Adding nodes is part of ``deploy`` (``kubespray.deploy``): the inventory says which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from nornir.plugins.runners import SerialRunner

from kubebastion.api import ClusterHealth, poll_health
from kubebastion.cluster import Cluster
from kubebastion.day2 import playbooks, reset
from kubebastion.day2.nodes import plan_removal, state_without, without_nodes
from kubebastion.day2.task import (
    forget_cluster_state,
    forget_node_host_key,
    remove_kubeconfig_context,
)
from kubebastion.day2.versions import (
    api_version,
    parse_serial,
    parse_version,
    plan_upgrade,
)
from kubebastion.errors import StepError
from kubebastion.kubeconfig.task import default_context
from kubebastion.kubeconfig.verify import cluster_health
from kubebastion.kubespray import applied
from kubebastion.kubespray.deploy import (
    KubesprayReport,
    authorize_nodes,
    health_after,
    prepare_bastion,
    record_run,
    settings_for,
)
from kubebastion.kubespray.options import PlaybookOptions
from kubebastion.kubespray.playbook import PlaybookOutcome, ProgressEvent, run_stamp
from kubebastion.kubespray.recap import recap_rows
from kubebastion.kubespray.results import Prepared
from kubebastion.kubespray.settings import KubespraySettings
from kubebastion.kubespray.task import operator_known_hosts_files, run_kubespray_playbook
from kubebastion.nat.task import run_nat
from kubebastion.node_ips import resolve_node_ips
from kubebastion.report import CHANGED, FAILED, OK, HostOutcome, outcomes
from kubebastion.runlock import cluster_lock
from kubebastion.runtime import Run

Progress = Callable[[ProgressEvent], None]


@dataclass
class DayTwoReport(KubesprayReport):
    """One day-two command: the kubespray step's report (rows per part and host, health
    afterwards, ``notes``: what the user should do next), plus its plan and every
    playbook it ran."""

    command: str = ""
    plan: str = ""
    dry_run: bool = False
    playbooks: list[PlaybookOutcome] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "plan": self.plan, "dry_run": self.dry_run,
                "ok": not self.failed, "changed": self.changed,
                "rows": [r.as_dict() for r in self.rows],
                "playbooks": [p.as_dict() for p in self.playbooks],
                "health": self.health.as_dict() if self.health else None,
                "notes": list(self.notes)}


def _start(run: Run, settings: KubespraySettings, report: DayTwoReport
           ) -> Prepared | None:
    """The bastion prepared and its key in every node; None (rows say why) otherwise."""
    prepared = prepare_bastion(run, settings, report.rows)
    if prepared is None:
        return None
    running = prepared.running
    if running is not None:
        report.rows.append(HostOutcome(run.cluster.bastion.name, FAILED,
                                       f"a playbook left by a lost run is running (pid "
                                       f"{running.pid}, log {running.log}): wait for it with "
                                       "`invoke kubespray --attach`, then run this again",
                                       {"part": "playbook"}))
        return None
    return prepared if authorize_nodes(run, prepared.key, report.rows) else None


def play(run: Run, settings: KubespraySettings, facts: Any, options: PlaybookOptions,
         report: DayTwoReport, progress: Progress | None) -> bool:
    """One of kubespray's playbooks on the bastion, its recap as rows (per node, and the
    bastion's: the command or its summary); False when it failed."""
    bastion = run.cluster.bastion.name
    part = options.playbook
    # Serial: the playbook streams in the main thread, so Ctrl-C stops it (kubespray.task).
    played = run.nornir.filter(name=bastion).with_runner(SerialRunner()).run(
        task=run_kubespray_playbook, name=part, settings=settings, cluster=run.cluster,
        facts=facts, stamp=run_stamp(), progress=progress, options=options)
    outcome = played[bastion][0].result
    if not isinstance(outcome, PlaybookOutcome):  # a dry run, or it could not start
        report.rows += [_part(row, part) for row in outcomes(played)]
        return not played.failed
    report.playbooks.append(outcome)
    report.rows += recap_rows(outcome, [n.name for n in run.cluster.nodes], part)
    if played.failed:
        report.rows += [_part(row, part) for row in outcomes(played)]
        return False
    report.rows.append(HostOutcome(bastion, CHANGED, f"{options.describe()}: "
                                   f"{outcome.recap_line()}", {"part": part}))
    return True


def _part(row: HostOutcome, part: str) -> HostOutcome:
    return HostOutcome(row.host, row.status, row.detail, {**row.data, "part": part})


def remove_node(run: Run, node: str, *, offline: bool = False,
                settings: KubespraySettings | None = None, progress: Progress | None = None,
                ready_timeout: float = 300.0) -> DayTwoReport:
    """``remove-node.yml -e node=NODE`` (kubespray drains, resets and deletes it), then the
    node is checked gone from the API and its host key leaves the bastion's known_hosts.
    Refused before any SSH: see ``day2.nodes.plan_removal``."""
    removal = plan_removal(run.cluster, node, offline=offline)
    report = DayTwoReport(command="remove-node", plan=removal.describe(),
                          dry_run=bool(run.nornir.data.dry_run))
    settings = settings or settings_for(run)
    with cluster_lock(run, "remove-node"):
        run = resolve_node_ips(run)
        prepared = _start(run, settings, report)
        if prepared is None or not play(run, settings, prepared.facts,
                                        playbooks.remove_node(node, offline=offline),
                                        report, progress):
            return report
        cluster, bastion = run.cluster, run.cluster.bastion.name
        forgot = run.nornir.filter(name=bastion).run(
            task=forget_node_host_key, name="known_hosts", settings=settings,
            facts=prepared.facts, cluster=cluster, node=node,
            operator_known_hosts=operator_known_hosts_files(run.nornir, cluster))
        report.rows += [_part(row, "known_hosts") for row in outcomes(forgot)]
        report.notes.append(f"remove {node} from the inventory now (hosts.yaml): kubespray "
                            "needed it there for the removal; while it stays, the next "
                            f"deploy adds it back")
        if report.dry_run:
            return report
        recorded, desired = prepared.recorded, prepared.desired
        if recorded is not None and not applied.reasons_to_run(recorded, desired):
            record_run(run, settings, prepared.facts,
                       state_without(desired, cluster, node))
        remaining = without_nodes(cluster, [node])
        health_after(report, poll_health(lambda: _gone(run, remaining, node), ready_timeout),
               f"after remove-node.yml, within {ready_timeout:g} s")
    return report


def _gone(run: Run, remaining: Cluster, node: str) -> ClusterHealth:
    """Healthy when the remaining nodes are Ready and ``node`` is no longer registered."""
    health = cluster_health(run.nornir, remaining)
    if node in health.registered:
        return replace(health, healthy=False,
                       detail=f"{node} is still registered ({health.detail})")
    return health


def upgrade(run: Run, kube_version: str, *, serial: int = 1,
            settings: KubespraySettings | None = None, progress: Progress | None = None,
            ready_timeout: float = 300.0) -> DayTwoReport:
    """``upgrade-cluster.yml -e kube_version=X -e serial=N`` from the version the API
    reports, refused when kubespray does not support the step (``day2.versions``); then
    the API must report X and every node be Ready."""
    target = parse_version(kube_version, "--kube-version")
    serial = parse_serial(serial)
    report = DayTwoReport(command="upgrade", dry_run=bool(run.nornir.data.dry_run))
    settings = settings or settings_for(run)
    with cluster_lock(run, "upgrade"):
        run = resolve_node_ips(run)
        health = cluster_health(run.nornir, run.cluster)
        current = api_version(health.api_version)
        if not health.healthy or current is None:
            raise StepError(f"the cluster must be up with every node Ready before an "
                            f"upgrade: {health.detail}")
        plan = plan_upgrade(current, target)
        report.plan = plan.describe()
        if not plan.needed:
            health_after(report, health, "")
            return report
        prepared = _start(run, settings, report)
        if prepared is None or not play(run, settings, prepared.facts,
                                        playbooks.upgrade(str(target), serial), report,
                                        progress):
            return report
        if report.dry_run:
            return report
        wanted = run.cluster.kubespray_vars.get("kube_version")
        if wanted is not None and str(wanted).lstrip("v") == str(target):
            record_run(run, settings, prepared.facts, prepared.desired)
        else:
            report.notes.append(
                f"set kube_version: '{target}' in kubespray_vars (defaults.yaml): it says "
                f"{wanted or 'nothing (kubespray default)'}, and the next deploy runs "
                "cluster.yml with that version")
        health_after(report, poll_health(lambda: _at_version(run, target.tag), ready_timeout),
               f"after upgrade-cluster.yml, within {ready_timeout:g} s")
    return report


def _at_version(run: Run, tag: str) -> ClusterHealth:
    health = cluster_health(run.nornir, run.cluster)
    if health.healthy and health.api_version.split("+")[0] != tag:
        return replace(health, healthy=False,
                       detail=f"the API reports {health.api_version}, not {tag}")
    return health


def reset_cluster(run: Run, confirmed: str | None, *, everything: bool = False,
                  context: str | None = None, settings: KubespraySettings | None = None,
                  progress: Progress | None = None) -> DayTwoReport:
    """``reset.yml -e reset_confirmation=yes`` once ``confirmed`` is the cluster's name,
    then our context leaves the bastion's kubeconfig and kubebastion's records of the
    cluster leave the bastion; ``everything``: the NAT, kubespray checkout and venv too."""
    reset.check_confirmation(run.cluster, confirmed)
    report = DayTwoReport(command="reset", plan=f"reset cluster {run.cluster.name}",
                          dry_run=bool(run.nornir.data.dry_run))
    settings = settings or settings_for(run)
    with cluster_lock(run, "reset"):
        run = resolve_node_ips(run)
        prepared = _start(run, settings, report)
        if prepared is None or not play(run, settings, prepared.facts, playbooks.reset(),
                                        report, progress):
            return report
        bastion = run.nornir.filter(name=run.cluster.bastion.name)
        name = context or default_context(run.cluster)
        report.rows += [_part(row, "kubeconfig") for row in outcomes(bastion.run(
            task=remove_kubeconfig_context, name="kubeconfig", cluster=run.cluster,
            context=name))]
        report.rows += [_part(row, "state") for row in outcomes(bastion.run(
            task=forget_cluster_state, name="state", settings=settings,
            facts=prepared.facts, cluster=run.cluster, everything=everything))]
        if everything:
            report.rows += [_part(row, "nat") for row in run_nat(run, remove=True)]
        if not report.dry_run:
            health = cluster_health(run.nornir, run.cluster)
            gone = not health.api_version
            report.rows.append(HostOutcome(
                "cluster", OK if gone else FAILED, "the API no longer answers" if gone else
                f"the API still answers after reset.yml: {health.detail}",
                {"part": "cluster health"}))
    return report


