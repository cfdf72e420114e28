"""The kubespray step end to end: prepare the bastion, let its key into the nodes, check the
cluster, run the playbook only when needed, and check the cluster again.

Each stage is a Nornir run, so the threaded runner authorizes the key on all nodes at
once; a failed stage stops the sequence (later stages would only fail louder). The
returned report has one row per part and host, in the order things happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from nornir.core.task import AggregatedResult
from nornir.plugins.runners import SerialRunner

from kubebastion.api import ClusterHealth, poll_health
from kubebastion.cluster import Cluster
from kubebastion.day2 import playbooks as day2_playbooks
from kubebastion.day2.nodes import NGINX_PROXY_NOTE, pending_additions, without_nodes
from kubebastion.day2.versions import planned_by_inventory
from kubebastion.errors import ConfigError
from kubebastion.kubeconfig.verify import cluster_health
from kubebastion.kubespray import applied, attach
from kubebastion.kubespray.attach import RunningPlaybook
from kubebastion.kubespray.bastion import BastionFacts
from kubebastion.kubespray.options import PlaybookOptions
from kubebastion.kubespray.playbook import PlaybookOutcome, ProgressEvent, run_stamp
from kubebastion.kubespray.recap import recap_rows
from kubebastion.kubespray.results import Prepared
from kubebastion.kubespray.settings import KubespraySettings, settings_from
from kubebastion.kubespray.sshtrust import BastionKey
from kubebastion.kubespray.task import (
    RUNNING,
    attach_kubespray_playbook,
    authorize_bastion_key,
    operator_known_hosts_files,
    prepare_kubespray,
    record_applied,
    run_kubespray_playbook,
)
from kubebastion.node_ips import resolve_node_ips
from kubebastion.report import CHANGED, FAILED, OK, HostOutcome, part_outcomes
from kubebastion.runlock import cluster_lock
from kubebastion.runtime import Run

HEALTH, PLAYBOOK, AUTHORIZE, PREFLIGHT = (
    "cluster health", "playbook", "authorized_keys", "preflight")


@dataclass
class KubesprayReport:
    rows: list[HostOutcome] = field(default_factory=list)
    playbook: PlaybookOutcome | None = None
    health: ClusterHealth | None = None
    #: Why the playbook runs; empty when it was skipped.
    reasons: list[str] = field(default_factory=list)
    preflight: PlaybookOutcome | None = None
    #: What the user must do by hand afterwards (kubespray's docs' manual steps).
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.status == FAILED for r in self.rows)

    @property
    def changed(self) -> bool:
        return any(r.status == CHANGED for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "changed": self.changed,
                "rows": [r.as_dict() for r in self.rows],
                "playbook": self.playbook.as_dict() if self.playbook else None,
                "reasons": list(self.reasons),
                "health": self.health.as_dict() if self.health else None,
                "preflight": self.preflight.as_dict() if self.preflight else None,
                "notes": list(self.notes)}


def _rows(results: AggregatedResult, part: str | None = None) -> list[HostOutcome]:
    """Rows of a stage: one per part (the bastion's read-only helpers only when they fail)."""
    return part_outcomes(results, part, hidden=("facts", RUNNING))


def _with_reasons(row: HostOutcome, reasons: list[str]) -> HostOutcome:
    """The playbook row, saying why it ran (or would run)."""
    if not reasons or row.status == FAILED:
        return row
    return HostOutcome(row.host, row.status, f"{row.detail} (because "
                       f"{'; '.join(reasons)})", row.data)


def health_row(health: ClusterHealth) -> HostOutcome:
    """Before the playbook the check only decides; "not up" is not a failure."""
    detail = health.detail if health.healthy else f"not up yet: {health.detail}"
    return HostOutcome("cluster", OK, detail, {"part": HEALTH})


def deploy_kubespray(run: Run, settings: KubespraySettings, *,
                     on_line: Callable[[str], None] | None = None,
                     progress: Callable[[ProgressEvent], None] | None = None,
                     attach_only: bool = False,
                     preflight_only: bool = False) -> KubesprayReport:
    """The kubespray step, holding the cluster's lock (see ``kubebastion.runlock``). A
    playbook that a lost run left running is waited for instead of starting one (see
    ``kubespray.attach``); ``attach_only``: only that, nothing else is done.
    ``preflight_only``: only kubespray's own checks, whatever the cluster's health."""
    with cluster_lock(run, "kubespray"):
        return _deploy_kubespray(run, settings, on_line, progress, attach_only,
                                 preflight_only)


def _deploy_kubespray(run: Run, settings: KubespraySettings,
                      on_line: Callable[[str], None] | None,
                      progress: Callable[[ProgressEvent], None] | None,
                      attach_only: bool, preflight_only: bool) -> KubesprayReport:
    run = resolve_node_ips(run)  # kubespray's ip for nodes given by name
    cluster, nornir = run.cluster, run.nornir
    report = KubesprayReport()
    bastion = cluster.bastion.name

    prepared = prepare_bastion(run, settings, report.rows)
    if prepared is None:
        return report
    facts = prepared.facts
    if prepared.running is not None:
        return _attach(run, settings, report, prepared.running, on_line, progress)
    if attach_only:
        report.rows.append(HostOutcome(bastion, OK, "no kubespray playbook runs on the "
                                       "bastion: nothing to attach to", {"part": PLAYBOOK}))
        return report
    desired = prepared.desired
    report.reasons = applied.reasons_to_run(prepared.recorded, desired)
    if not authorize_nodes(run, prepared.key, report.rows):
        return report

    stamp = run_stamp()
    if preflight_only:
        _run_preflight(run, settings, facts, stamp, report, on_line, progress)
        return report

    # Day two: nodes added to the inventory, and nothing else changed, are added alone
    # (their absence does not make the rest of the cluster unhealthy).
    additions = (pending_additions(prepared.recorded, desired, cluster)
                 if report.reasons and not settings.force
                 and settings.playbook == PlaybookOptions() else None)
    report.health = cluster_health(nornir, cluster if additions is None
                                   else without_nodes(cluster, additions.nodes))
    report.rows.append(health_row(report.health))
    if additions is not None and report.health.healthy:
        report.reasons = [additions.describe()]
        if not additions.needs_cluster_yml:
            return _add_workers(run, settings, report, facts, desired, additions.workers,
                                stamp, progress)
        report.notes.append(NGINX_PROXY_NOTE)
    if not report.health.healthy:
        report.reasons.append(f"the cluster is not healthy ({report.health.detail})")
    if settings.force:
        report.reasons.append("--force")
    if not report.reasons:
        report.rows.append(HostOutcome(
            bastion, OK, "skipped: the last successful run was made from this exact state "
            "and the cluster is healthy (--force runs it anyway)", {"part": PLAYBOOK}))
        return report
    options = _upgrade_options(cluster, report.health, settings, report.reasons)

    if settings.preflight and not _run_preflight(run, settings, facts, stamp, report,
                                                 on_line, progress):
        return report
    # Serial: the playbook streams in this (the main) thread, so Ctrl-C reaches the task,
    # which stops the remote playbook instead of leaving it running.
    played = nornir.filter(name=bastion).with_runner(SerialRunner()).run(
        task=run_kubespray_playbook, name=PLAYBOOK, settings=settings, cluster=cluster,
        facts=facts, stamp=stamp, on_line=on_line, progress=progress, options=options)
    return _after_playbook(run, settings, report, played, (facts, desired))


def _upgrade_options(cluster: Cluster, health: ClusterHealth, settings: KubespraySettings,
                     reasons: list[str]) -> PlaybookOptions | None:
    """``upgrade-cluster.yml`` instead of cluster.yml when ``kube_version`` in
    kubespray_vars is newer than what the API runs (see ``day2.versions``); None:
    cluster.yml as usual."""
    plan = (planned_by_inventory(cluster.kubespray_vars.get("kube_version"),
                                 health.api_version) if health.healthy else None)
    if plan is None:
        return None
    reasons.append(f"{plan.describe()} (upgrade-cluster.yml, one node at a time)")
    upgrade = day2_playbooks.upgrade(str(plan.target))
    return replace(settings.playbook, playbook=upgrade.playbook,
                   extra_vars=settings.playbook.extra_vars + upgrade.extra_vars)


def _add_workers(run: Run, settings: KubespraySettings, report: KubesprayReport,
                 facts: BastionFacts, desired: dict[str, str], workers: Sequence[str],
                 stamp: str, progress: Callable[[ProgressEvent], None] | None
                 ) -> KubesprayReport:
    """kubespray's way to add workers (docs/operations/nodes.md): every host's facts
    refreshed, then ``scale.yml --limit=<the new workers>``; the other nodes are not
    touched. Then the record learns the new nodes and every node must be Ready."""
    cluster, bastion = run.cluster, run.cluster.bastion.name
    for options in (day2_playbooks.facts_refresh(), day2_playbooks.scale(workers)):
        part = options.playbook
        played = run.nornir.filter(name=bastion).with_runner(SerialRunner()).run(
            task=run_kubespray_playbook, name=part, settings=settings, cluster=cluster,
            facts=facts, stamp=f"{stamp}-{PurePosixPath(part).stem}", progress=progress,
            options=options)
        outcome = played[bastion][0].result
        if not isinstance(outcome, PlaybookOutcome):  # dry run, or it could not start
            report.rows += _rows(played, part)
            if played.failed:
                return report
            continue
        report.playbook = outcome
        report.rows += recap_rows(outcome, [n.name for n in cluster.nodes], part)
        report.rows += [_with_reasons(row, report.reasons) for row in _rows(played, part)]
        if played.failed:
            return report
    if run.nornir.data.dry_run:
        return report
    record_run(run, settings, facts, desired, report.rows)
    health_after(report, poll_health(lambda: cluster_health(run.nornir, cluster),
                                     settings.ready_timeout), "")
    return report


def record_run(run: Run, settings: KubespraySettings, facts: BastionFacts,
               desired: dict[str, str], rows: list[HostOutcome] | None = None) -> None:
    """Record a successful run (``applied``): what the cluster is made from now, so the
    next run has nothing to do. Failing to write it is not this run's failure, only means
    the next run plays again; ``rows``: where to say so."""
    recorded = run.nornir.filter(name=run.cluster.bastion.name).run(
        task=record_applied, name="record the run", settings=settings, cluster=run.cluster,
        facts=facts, desired=desired)
    if recorded.failed and rows is not None:
        rows.append(HostOutcome(run.cluster.bastion.name, OK, "could not record this "
                                "successful run; the next run will play again",
                                {"part": PLAYBOOK}))


def health_after(report: KubesprayReport, health: ClusterHealth, waited: str) -> None:
    """``health`` as the report's outcome: its row fails when the cluster is not healthy,
    the detail then saying after what it was checked (``waited``, "" for nothing)."""
    report.health = health
    detail = health.detail if health.healthy or not waited else f"{waited}: {health.detail}"
    report.rows.append(HostOutcome("cluster", OK if health.healthy else FAILED, detail,
                                   {"part": HEALTH}))


def prepare_bastion(run: Run, settings: KubespraySettings,
                    rows: list[HostOutcome]) -> Prepared | None:
    """``prepare_kubespray`` on the bastion, its rows added to ``rows``; its result (facts,
    key, desired and recorded state, a running playbook), or None when it failed."""
    bastion = run.cluster.bastion.name
    prepared = run.nornir.filter(name=bastion).run(
        task=prepare_kubespray, name="kubespray: bastion", settings=settings,
        cluster=run.cluster, operator_known_hosts=operator_known_hosts_files(run.nornir,
                                                                            run.cluster))
    rows += _rows(prepared, "prepare")
    if prepared[bastion].failed:
        return None
    result: Prepared = prepared[bastion][0].result
    return result


def authorize_nodes(run: Run, key: BastionKey | None, rows: list[HostOutcome]) -> bool:
    """The bastion's key in every node's authorized_keys (a node that has it: no change);
    False when a node failed."""
    node_names = {n.name for n in run.cluster.nodes}
    authorized = run.nornir.filter(filter_func=lambda h: h.name in node_names).run(
        task=authorize_bastion_key, name=AUTHORIZE, public_key=key.public_key if key else None)
    rows += _rows(authorized, AUTHORIZE)
    return not authorized.failed


def _attach(run: Run, settings: KubespraySettings, report: KubesprayReport,
            running: RunningPlaybook, on_line: Callable[[str], None] | None,
            progress: Callable[[ProgressEvent], None] | None) -> KubesprayReport:
    """A lost run's playbook is running: this cluster's is waited for (and then this run
    goes on as if it had started it), another's stops this run."""
    bastion = run.cluster.bastion.name
    if not running.known or running.cluster != run.cluster.name:
        lock = str(PurePosixPath(running.log or "~/kubebastion-logs/x").parent
                   / "kubespray.lock")
        report.rows.append(HostOutcome(bastion, FAILED, attach.describe_other(
            running, lock, run.cluster.name), {"part": PLAYBOOK}))
        return report
    played = run.nornir.filter(name=bastion).with_runner(SerialRunner()).run(
        task=attach_kubespray_playbook, name=PLAYBOOK, settings=settings, running=running,
        on_line=on_line, progress=progress)
    # Not recorded as applied (see ``applied``): that playbook ran from the lost run's
    # state, which this run cannot vouch for; the next run plays again.
    return _after_playbook(run, settings, report, played, None)


def _after_playbook(run: Run, settings: KubespraySettings, report: KubesprayReport,
                    played: AggregatedResult,
                    record: tuple[BastionFacts, dict[str, str]] | None) -> KubesprayReport:
    """The playbook's row; unless it failed, its record (``record``: the facts and the
    desired state it was started from), then wait for the cluster to be healthy."""
    cluster = run.cluster
    bastion = cluster.bastion.name
    result = played[bastion][0]
    if isinstance(result.result, PlaybookOutcome):
        report.playbook = result.result
    report.rows += [_with_reasons(row, report.reasons) for row in _rows(played, PLAYBOOK)]
    if played.failed or run.nornir.data.dry_run:
        return report
    # A run of some tags (or without some) did not apply the whole state: never recorded.
    if (record is not None and report.playbook is not None
            and settings.playbook.plays_everything
            and applied.complete_success(report.playbook, [n.name for n in cluster.nodes])):
        facts, desired = record
        record_run(run, settings, facts, desired, report.rows)

    health_after(report, poll_health(lambda: cluster_health(run.nornir, run.cluster),
                                     settings.ready_timeout),
                 f"after the playbook, within {settings.ready_timeout:g} s")
    return report


def _run_preflight(run: Run, settings: KubespraySettings, facts: BastionFacts, stamp: str,
                   report: KubesprayReport, on_line: Callable[[str], None] | None,
                   progress: Callable[[ProgressEvent], None] | None) -> bool:
    """kubespray's own quick checks (seconds) before its long run (tens of minutes): the
    same playbook with ``--tags facts,asserts``, which changes nothing. One row per node,
    plus the bastion's (the command and its recap, or why it did not finish)."""
    bastion = run.cluster.bastion.name
    played = run.nornir.filter(name=bastion).with_runner(SerialRunner()).run(
        task=run_kubespray_playbook, name=PREFLIGHT, settings=settings, cluster=run.cluster,
        facts=facts, stamp=f"{stamp}-preflight", on_line=on_line, progress=progress,
        options=settings.playbook.for_preflight())
    outcome = played[bastion][0].result
    if not isinstance(outcome, PlaybookOutcome):  # dry run, or it could not start
        report.rows += _rows(played, PREFLIGHT)
        return not played.failed
    report.preflight = outcome
    report.rows += recap_rows(outcome, [n.name for n in run.cluster.nodes], PREFLIGHT)
    if played.failed:
        report.rows += _rows(played, PREFLIGHT)
        return False
    changed = any(r.changed for r in outcome.parsed.recap.values())
    report.rows.append(HostOutcome(bastion, CHANGED if changed else OK, outcome.recap_line(),
                                   {"part": PREFLIGHT}))
    return True


def settings_for(run: Run, *, source: str | None = None, version: str | None = None,
                 wheelhouse: str | None = None, timeout: float | None = None,
                 log_dir: str | None = None, force: bool = False,
                 **playbook: Any) -> KubespraySettings:
    """The inventory's ``kubespray:`` settings (paths relative to the config file) with
    these overrides (paths relative to the current folder). ``playbook``: settings_from's
    source_sha256, tags, skip_tags, limit, extra_vars and preflight."""
    data = run.nornir.inventory.defaults.data.get("kubespray")
    if data is not None and not isinstance(data, dict):
        raise ConfigError("kubespray (in defaults.yaml data) must be a mapping of settings")
    return settings_from(data, run.config_path.resolve().parent, source=source,
                         version=version, wheelhouse=wheelhouse, timeout=timeout,
                         log_dir=log_dir, force=force, **playbook)
