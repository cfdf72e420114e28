"""``deploy``: the whole flow, in order, over one Nornir object and one login per host.

validate (already done by ``build_run``) -> preflight -> NAT -> egress check -> kubespray
-> admin.conf -> fetch-kubeconfig (which waits for every node Ready). The egress check
is a gate: a kubespray run that would fail at its downloads half an hour later helps
nobody. Every step is idempotent, so a rerun after a failure resumes where it stopped:
finished steps report ``changed=False``, and kubespray's playbook is skipped when its last
successful run was made from exactly the desired state and the cluster is healthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubebastion.admin_conf import run_admin_conf
from kubebastion.check import check_host
from kubebastion.egress.task import run_egress_check
from kubebastion.errors import ConfigError, KubeBastionError
from kubebastion.interrupt import set_stage
from kubebastion.kubeconfig.task import run_fetch_kubeconfig
from kubebastion.kubespray.deploy import KubesprayReport, deploy_kubespray, settings_for
from kubebastion.kubespray.playbook import ProgressEvent
from kubebastion.kubespray.settings import KubespraySettings
from kubebastion.kubespray.task import check_bastion_python
from kubebastion.nat.task import run_nat
from kubebastion.node_ips import resolve_node_ips
from kubebastion.report import (
    CHANGED,
    FAILED,
    OK,
    SKIPPED,
    HostOutcome,
    describe_exception,
    outcomes,
)
from kubebastion.runlock import cluster_lock
from kubebastion.runtime import Run

PREFLIGHT, NAT, EGRESS, KUBESPRAY, ADMIN_CONF, FETCH = (
    "preflight", "nat", "egress", "kubespray", "admin-conf", "fetch-kubeconfig")
STEPS = (PREFLIGHT, NAT, EGRESS, KUBESPRAY, ADMIN_CONF, FETCH)
#: Steps whose hosts ``--limit`` narrows; the others act on the bastion or the cluster.
LIMITABLE = (PREFLIGHT, EGRESS, ADMIN_CONF)


@dataclass
class StepReport:
    name: str
    status: str
    seconds: float = 0.0
    rows: list[HostOutcome] = field(default_factory=list)
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 3),
                "detail": self.detail, "hosts": [r.as_dict() for r in self.rows],
                **({"extra": self.extra} if self.extra else {})}


@dataclass
class DeployReport:
    cluster: str
    dry_run: bool
    steps: list[StepReport] = field(default_factory=list)
    seconds: float = 0.0
    context: str = ""
    kubeconfig: str = ""

    @property
    def failed_step(self) -> StepReport | None:
        return next((s for s in self.steps if s.status == FAILED), None)

    @property
    def changed(self) -> bool:
        return any(s.status == CHANGED for s in self.steps)

    def next_command(self) -> str:
        if self.failed_step is not None or self.dry_run or not self.context:
            return ""
        return f"kubectl --context {self.context} get nodes   # on the bastion"

    def as_dict(self) -> dict[str, Any]:
        failed = self.failed_step
        return {
            "cluster": self.cluster, "dry_run": self.dry_run,
            "ok": failed is None, "changed": self.changed,
            "failed_step": failed.name if failed else None,
            "seconds": round(self.seconds, 3), "context": self.context,
            "kubeconfig": self.kubeconfig, "next": self.next_command(),
            "steps": [s.as_dict() for s in self.steps],
        }


@dataclass
class DeployOptions:
    steps: Sequence[str] = STEPS
    limit: Sequence[str] = ()
    kubespray: KubespraySettings | None = None
    context: str | None = None
    switch: bool = True
    ready_timeout: float = 300.0


#: Callbacks for live progress: a step starts/ends, a kubespray event arrives.
StepListener = Callable[[str, StepReport | None], None]


def select_steps(steps: str = "", skip: str = "") -> tuple[str, ...]:
    """``--steps a,b`` / ``--skip c`` into the ordered tuple to run; unknown names fail."""
    wanted = [s.strip() for s in steps.split(",") if s.strip()] or list(STEPS)
    skipped = [s.strip() for s in skip.split(",") if s.strip()]
    unknown = sorted(set(wanted + skipped) - set(STEPS))
    if unknown:
        raise ConfigError(f"unknown step(s): {', '.join(unknown)} "
                          f"(steps: {', '.join(STEPS)})")
    return tuple(s for s in STEPS if s in wanted and s not in skipped)


def step_status(rows: Sequence[HostOutcome]) -> str:
    if any(r.status == FAILED for r in rows):
        return FAILED
    if any(r.status == CHANGED for r in rows):
        return CHANGED
    return OK


def limited(run: Run, limit: Sequence[str]) -> Run:
    """The run narrowed to ``limit`` (plus the bastion, the way in)."""
    if not limit:
        return run
    names = set(limit)
    unknown = sorted(names - set(run.nornir.inventory.hosts))
    if unknown:
        raise ConfigError(f"--limit names unknown host(s): {', '.join(unknown)}")
    bastion = run.cluster.bastion.name
    nornir = run.nornir.filter(filter_func=lambda h: h.name in names or h.name == bastion)
    return Run(nornir=nornir, cluster=run.cluster, config_path=run.config_path)


def _preflight(run: Run, options: DeployOptions) -> StepReport:
    """Every host: login, sudo, python3. With the kubespray step ahead, also the bastion's
    Python for kubespray's venv, so a bastion that cannot run this kubespray stops here,
    before anything is cloned or uploaded."""
    rows = outcomes(run.nornir.run(task=check_host, name=PREFLIGHT))
    try:  # kubespray's ip of nodes given by name, read from them (stops here if it cannot)
        resolve_node_ips(run)
    except KubeBastionError as exc:
        rows.append(HostOutcome("cluster", FAILED, describe_exception(exc), {"part": "ip"}))
    if KUBESPRAY in options.steps:
        settings = options.kubespray or settings_for(run)
        rows += outcomes(run.nornir.filter(name=run.cluster.bastion.name).run(
            task=check_bastion_python, name="bastion python", settings=settings))
    return StepReport(PREFLIGHT, "", rows=rows)


def _kubespray_step(run: Run, options: DeployOptions,
                    progress: Callable[[ProgressEvent], None] | None) -> StepReport:
    settings = options.kubespray or settings_for(run)
    report: KubesprayReport = deploy_kubespray(run, settings, progress=progress)
    extra: dict[str, Any] = {}
    if report.preflight is not None:
        extra["preflight"] = report.preflight.as_dict()
    if report.playbook is not None:
        extra["playbook"] = report.playbook.as_dict()
    if report.health is not None:
        extra["health"] = report.health.as_dict()
    if report.reasons:
        extra["reasons"] = list(report.reasons)
    if report.notes:
        extra["notes"] = list(report.notes)
    return StepReport(KUBESPRAY, "", rows=report.rows, extra=extra)


def deploy(run: Run, options: DeployOptions | None = None, *,
           on_step: StepListener | None = None,
           progress: Callable[[ProgressEvent], None] | None = None) -> DeployReport:
    """Run the selected steps in order, holding the cluster's lock; stop at the first
    failure (later steps: skipped)."""
    with cluster_lock(run, "deploy"):
        return _deploy(run, options or DeployOptions(), on_step, progress)


def _deploy(run: Run, options: DeployOptions, on_step: StepListener | None,
            progress: Callable[[ProgressEvent], None] | None) -> DeployReport:
    dry_run = bool(run.nornir.data.dry_run)
    report = DeployReport(cluster=run.cluster.name, dry_run=dry_run)
    started = time.monotonic()
    narrowed = limited(run, options.limit)
    stop_reason = ""
    kubespray_would_run = False
    for name in STEPS:
        if name not in options.steps:
            continue
        if stop_reason:
            report.steps.append(StepReport(name, SKIPPED, detail=stop_reason))
            continue
        if dry_run and kubespray_would_run and name in (ADMIN_CONF, FETCH):
            report.steps.append(StepReport(name, SKIPPED,
                                           detail="runs after kubespray's playbook"))
            continue
        if on_step:
            on_step(name, None)
        set_stage(f"step {name}")
        step_started = time.monotonic()
        step_run = narrowed if name in LIMITABLE else run
        try:
            step = _run_step(name, step_run, options, progress, report)
        except KubeBastionError as exc:
            step = StepReport(name, FAILED, detail=describe_exception(exc))
        step.seconds = time.monotonic() - step_started
        if not step.status:
            step.status = step_status(step.rows)
        if step.status == FAILED and not step.detail:
            failed = [r for r in step.rows if r.status == FAILED]
            step.detail = "; ".join(f"{r.host}: {r.detail}" for r in failed)[:2000]
        report.steps.append(step)
        if on_step:
            on_step(name, step)
        if name == KUBESPRAY and dry_run:
            kubespray_would_run = any(
                r.data.get("part") == "playbook" and r.status == CHANGED for r in step.rows)
        if step.status == FAILED:
            if name == EGRESS and dry_run:
                step.detail = ("the nodes cannot reach the egress targets yet "
                               "(the NAT step above would change that): " + step.detail)
                step.status = SKIPPED
                # Nornir leaves a host out of every later run once a task failed on it;
                # the real run would have NAT here, so the nodes go on (authorized_keys).
                for row in step.rows:
                    if row.status == FAILED:
                        run.nornir.data.recover_host(row.host)
                continue
            stop_reason = f"not run: step {name} failed"
    report.seconds = time.monotonic() - started
    return report


def _run_step(name: str, run: Run, options: DeployOptions,
              progress: Callable[[ProgressEvent], None] | None,
              report: DeployReport) -> StepReport:
    if name == PREFLIGHT:
        return _preflight(run, options)
    if name == NAT:
        return StepReport(NAT, "", rows=run_nat(run))
    if name == EGRESS:
        return StepReport(EGRESS, "", rows=run_egress_check(run))
    if name == KUBESPRAY:
        return _kubespray_step(run, options, progress)
    if name == ADMIN_CONF:
        return StepReport(ADMIN_CONF, "", rows=run_admin_conf(run))
    fetched = run_fetch_kubeconfig(run, context=options.context, switch=options.switch,
                                   ready_timeout=options.ready_timeout)
    if fetched.rows and fetched.rows[0].data:
        report.context = str(fetched.rows[0].data.get("context", ""))
        report.kubeconfig = str(fetched.rows[0].data.get("path", ""))
    extra: dict[str, Any] = {}
    if fetched.health is not None:
        extra["health"] = fetched.health.as_dict()
    if fetched.nodes:
        extra["nodes"] = [vars(n) for n in fetched.nodes]
    if fetched.kubectl:
        extra["kubectl"] = fetched.kubectl
    return StepReport(FETCH, "", rows=fetched.rows, extra=extra)

