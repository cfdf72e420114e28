"""kubebastion's tasks, one Invoke collection for every front end: the ``kubebastion``
console command, ``invoke`` in this checkout (``tasks.py`` adds the lab) and a user's own
``tasks.py``.

A task parses its options, makes one call into the library, and ends through
:func:`~kubebastion.cli.ending.finish`: JSON or tables, then exit 0, 1 (a step failed)
or 2 (bad inventory or usage).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit

from kubebastion.check import run_check
from kubebastion.cli.ending import (
    CONFIG_SECTION,
    DEFAULT_COMMAND,
    FAILED_CODE,
    USAGE_CODE,
    command_name,
    exits_cleanly,
    finish,
    opened_run,
)
from kubebastion.egress.task import run_egress_check
from kubebastion.nat.task import run_nat
from kubebastion.options import Port, PositiveCount, Seconds, task
from kubebastion.ui.console import console, err_console, failed_hosts, failure_summary
from kubebastion.ui.reports import show_admin_conf, show_check, show_fetch_kubeconfig, show_nat

if TYPE_CHECKING:  # loaded when a day-two task runs (`--list` stays quick)
    from kubebastion.day2.commands import DayTwoReport
    from kubebastion.runtime import Run

#: Relative to the current directory, as ``invoke`` would find it.
DEFAULT_CONFIG = "nornir_config.yaml"
CONFIG_HELP = "Nornir config file"
SUDO_HELP = "prompt for the sudo password"


def common_help(**specific: str) -> dict[str, str]:
    """The help of the options most tasks share (config, json, sudo password), plus the
    task's own: one wording for the same option everywhere."""
    return {"config": CONFIG_HELP, "json": "machine-readable output",
            "ask_sudo_password": SUDO_HELP, **specific}


@task(help=common_help(
        egress="also check that every node reaches the egress targets"))
@exits_cleanly
def check(c: Context, config: str = DEFAULT_CONFIG, json: bool = False,
          ask_sudo_password: bool = False, egress: bool = False) -> None:
    """Reach every host (nodes through the bastion): login, sudo, python3, OS."""
    with opened_run(config, ask_sudo_password=ask_sudo_password) as run:
        rows = run_check(run)
        egress_rows = run_egress_check(run) if egress else None
    document: dict[str, Any] = {"hosts": [r.as_dict() for r in rows]}
    if egress_rows is not None:
        document["egress"] = [r.as_dict() for r in egress_rows]
    failures = [failure_summary(what, group) for what, group in
                (("check", rows), ("egress", egress_rows or [])) if failed_hosts(group)]
    finish(document, json, lambda: show_check(console, rows, egress_rows,
                                              f"{command_name(c)} nat"),
           "\n".join(failures))


@task(help=common_help(
        dry_run="show the diff, change nothing",
        remove="undo exactly what nat added"))
@exits_cleanly
def nat(c: Context, config: str = DEFAULT_CONFIG, dry_run: bool = False, remove: bool = False,
        json: bool = False, ask_sudo_password: bool = False) -> None:
    """Make the bastion the private network's gateway: forwarding and masquerade, at boot too."""
    with opened_run(config, dry_run=dry_run, ask_sudo_password=ask_sudo_password) as run:
        rows = run_nat(run, remove=remove)
    finish({"hosts": [r.as_dict() for r in rows]}, json, lambda: show_nat(console, rows),
           failure_summary("nat", rows) if failed_hosts(rows) else None)


@task(help=common_help(
        dry_run="show the inventory diff and the commands, change nothing",
        force="run the playbook even if the cluster is up",
        render_to="only write the rendered kubespray inventory to this folder",
        source="kubespray git URL, local checkout or tarball (to upload)",
        version="kubespray tag or branch to clone (default v2.31.0)",
        wheelhouse="build the venv offline from wheels downloaded here",
        timeout="playbook timeout in seconds (default: the kubespray timeout setting, 3600)",
        log_dir="local copy of the logs",
        attach="only wait for a playbook that a lost run left running, and report it",
        preflight="only kubespray's own checks: cluster.yml --tags facts,asserts",
        skip_preflight="do not run those checks before the long run",
        tags="ansible-playbook --tags (comma-separated)",
        skip_tags="ansible-playbook --skip-tags (comma-separated)",
        limit="ansible-playbook --limit (host pattern)",
        extra_vars="ansible-playbook -e: 'key=value ...' or JSON (more: the "
            "kubespray extra_vars setting)",
        source_sha256="the tarball source's expected sha256, checked before upload"))
@exits_cleanly
def kubespray(c: Context, config: str = DEFAULT_CONFIG, dry_run: bool = False,
              force: bool = False, render_to: str = "", source: str = "", version: str = "",
              wheelhouse: str = "", timeout: Seconds = 0, log_dir: str = "",
              json: bool = False, attach: bool = False,
              ask_sudo_password: bool = False, preflight: bool = False,
              skip_preflight: bool = False, tags: str = "", skip_tags: str = "",
              limit: str = "", extra_vars: str = "",
              source_sha256: str = "") -> None:
    """Run kubespray from the bastion: checkout, venv, inventory, SSH trust, cluster.yml."""
    from kubebastion.kubespray.deploy import deploy_kubespray, settings_for
    from kubebastion.kubespray.inventory import (
        render_kubespray_inventory,
        write_inventory_locally,
    )
    from kubebastion.ui.kubespray import ProgressPrinter, print_report

    if preflight and (tags or skip_tags or skip_preflight):
        raise Exit("error: --preflight runs kubespray's own --tags facts,asserts: drop "
                   "--tags, --skip-tags and --skip-preflight", USAGE_CODE)
    with opened_run(config, dry_run=dry_run, ask_sudo_password=ask_sudo_password) as run:
        if render_to:
            files = render_kubespray_inventory(run.cluster)
            for path in write_inventory_locally(files, Path(render_to)):
                console.print(f"wrote {path}", markup=False)
            return
        settings = settings_for(
            run, source=source or None, version=version or None,
            wheelhouse=wheelhouse or None, timeout=timeout or None, log_dir=log_dir or None,
            force=force, source_sha256=source_sha256 or None, tags=tags,
            skip_tags=skip_tags, limit=limit, extra_vars=[extra_vars] if extra_vars else [],
            preflight=False if skip_preflight else None)
        report = deploy_kubespray(
            run, settings, progress=ProgressPrinter(err_console if json else console),
            attach_only=attach, preflight_only=preflight)
    finish(report.as_dict(), json, lambda: print_report(report, console),
           failure_summary("kubespray", report.rows) if report.failed else None)


@task(help={"config": CONFIG_HELP, "dry_run": "show what every step would change",
            "json": "one machine-readable report (schema: docs/deploy-report.schema.json)",
            "steps": "comma-separated steps to run (default: all)",
            "skip": "comma-separated steps to skip",
            "limit": "comma-separated hosts for preflight, egress and admin-conf",
            "force": "run kubespray's playbook even if the cluster is healthy",
            "context": "kubeconfig context name (default: the cluster name)",
            "no_switch": "do not make it the current context on the bastion",
            "timeout": "seconds to wait for every node Ready",
            "ask_sudo_password": SUDO_HELP})
@exits_cleanly
def deploy(c: Context, config: str = DEFAULT_CONFIG, dry_run: bool = False,
           json: bool = False, steps: str = "", skip: str = "", limit: str = "",
           force: bool = False, context: str = "", no_switch: bool = False,
           timeout: Seconds = 300, ask_sudo_password: bool = False) -> None:
    """The whole flow: preflight, NAT, egress, kubespray, admin.conf, kubeconfig, Ready."""
    from kubebastion.deploy import DeployOptions, select_steps
    from kubebastion.deploy import deploy as run_deploy
    from kubebastion.kubespray.deploy import settings_for
    from kubebastion.ui.kubespray import ProgressPrinter
    from kubebastion.ui.progress import HostProgress, StepProgress, show_deploy

    selected = select_steps(steps, skip)
    live = err_console if json else console
    with opened_run(config, dry_run=dry_run, ask_sudo_password=ask_sudo_password) as run:
        run.nornir = run.nornir.with_processors([HostProgress(live)])
        options = DeployOptions(
            steps=selected, limit=[h.strip() for h in limit.split(",") if h.strip()],
            kubespray=settings_for(run, force=force), context=context or None,
            switch=not no_switch, ready_timeout=timeout)
        report = run_deploy(run, options, on_step=StepProgress(live),
                            progress=ProgressPrinter(live))
    failed = report.failed_step
    finish(report.as_dict(), json, lambda: show_deploy(console, report),
           f"deploy failed at step {failed.name}: {failed.detail}" if failed else None)


@task(help=common_help(
        dry_run="show what would change"))
@exits_cleanly
def admin_conf(c: Context, config: str = DEFAULT_CONFIG, dry_run: bool = False,
               json: bool = False, ask_sudo_password: bool = False) -> None:
    """On each control plane: admin.conf becomes the login user's ~/.kube/config."""
    from kubebastion.admin_conf import run_admin_conf

    with opened_run(config, dry_run=dry_run, ask_sudo_password=ask_sudo_password) as run:
        rows = run_admin_conf(run)
    finish({"hosts": [r.as_dict() for r in rows]}, json, lambda: show_admin_conf(console, rows),
           failure_summary("admin-conf", rows) if failed_hosts(rows) else None)


@task(optional=["local"],
      help=common_help(
              context="context name (default: cluster name)",
              no_switch="do not make it the current context",
              local="also merge a tunnel context into this local kubeconfig "
                  "(default ~/.kube/config)",
              tunnel_port="local port of the tunnel task for the --local context",
              timeout="seconds to wait for every node Ready",
              dry_run="show what would change"))
@exits_cleanly
def fetch_kubeconfig(c: Context, config: str = DEFAULT_CONFIG, context: str = "",
                     no_switch: bool = False, local: Any = None, tunnel_port: Port = 16443,
                     timeout: Seconds = 120, dry_run: bool = False, json: bool = False,
                     ask_sudo_password: bool = False) -> None:
    """Put the admin kubeconfig on the bastion (server rewritten, SANs checked), verify."""
    from kubebastion.kubeconfig.task import run_fetch_kubeconfig

    local_path = None
    if local is not None and local is not False:
        local_path = "~/.kube/config" if local is True or local == "" else str(local)
    with opened_run(config, dry_run=dry_run, ask_sudo_password=ask_sudo_password) as run:
        report = run_fetch_kubeconfig(run, context=context or None, switch=not no_switch,
                                      local_path=local_path, tunnel_port=tunnel_port,
                                      ready_timeout=timeout)
    finish(report.as_dict(), json, lambda: show_fetch_kubeconfig(console, report),
           failure_summary("fetch-kubeconfig", report.rows) if report.failed else None)


@task(help={"config": CONFIG_HELP, "port": "local port to listen on",
            "bind": "local address to listen on"})
@exits_cleanly
def tunnel(c: Context, config: str = DEFAULT_CONFIG, port: Port = 16443,
           bind: str = "127.0.0.1") -> None:
    """Forward a local port to the API server through the bastion, until Ctrl-C."""
    from kubebastion.ssh.tunnel import serve_api

    with opened_run(config) as run:
        serve_api(run.nornir, run.cluster, port, bind,
                  on_ready=lambda line: console.print(line, markup=False))


# --- day two (docs/day-two.md) ---------------------------------------------------------------

def _ask(prompt: str) -> str | None:
    """The user's answer (the question on stderr, so --json output stays one document);
    None when the input ended (no terminal): then nothing is confirmed."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip() if answer else None


def _day_two(config: str, dry_run: bool, json: bool, ask_sudo_password: bool,
             command: Callable[[Run, Callable[[Any], None]], DayTwoReport]) -> None:
    """Run one day-two command (``command(run, progress)``) and end with its report."""
    from kubebastion.ui.kubespray import ProgressPrinter
    from kubebastion.ui.reports import show_day_two

    with opened_run(config, dry_run=dry_run, ask_sudo_password=ask_sudo_password) as run:
        report = command(run, ProgressPrinter(err_console if json else console))
    finish(report.as_dict(), json, lambda: show_day_two(console, report),
           failure_summary(report.command, report.rows) if report.failed else None)


@task(help=common_help(
        yes="do not ask for confirmation",
        offline="the node is down: no reset, no drain (reset_nodes=false "
            "allow_ungraceful_removal=true)",
        dry_run="show what would run, change nothing",
        timeout="seconds to wait for the node to leave the API"))
@exits_cleanly
def remove_node(c: Context, name: str, config: str = DEFAULT_CONFIG, yes: bool = False,
                offline: bool = False, dry_run: bool = False, json: bool = False,
                timeout: Seconds = 300, ask_sudo_password: bool = False) -> None:
    """Remove a node (still in the inventory) with kubespray's remove-node.yml."""
    from kubebastion.day2.commands import remove_node as run_remove_node
    from kubebastion.day2.nodes import plan_removal

    def command(run: Run, progress: Callable[[Any], None]) -> DayTwoReport:
        removal = plan_removal(run.cluster, name, offline=offline)  # refusals before asking
        if not (yes or dry_run) and _ask(f"{removal.describe()} from cluster "
                                         f"{run.cluster.name}? Type 'yes': ") != "yes":
            raise Exit(f"not confirmed: {name} was not removed", FAILED_CODE)
        return run_remove_node(run, name, offline=offline, ready_timeout=timeout,
                               progress=progress)

    _day_two(config, dry_run, json, ask_sudo_password, command)


@task(help=common_help(
        kube_version="the Kubernetes version to upgrade to (vX.Y.Z, one minor up at most)",
        serial="how many nodes to upgrade at a time (default 1)",
        dry_run="show what would run, change nothing",
        timeout="seconds to wait for the new version and every node Ready"))
@exits_cleanly
def upgrade(c: Context, kube_version: str, config: str = DEFAULT_CONFIG,
            serial: PositiveCount = 1, dry_run: bool = False, json: bool = False,
            timeout: Seconds = 600, ask_sudo_password: bool = False) -> None:
    """Upgrade Kubernetes (one minor at most) with kubespray's upgrade-cluster.yml."""
    from kubebastion.day2.commands import upgrade as run_upgrade

    _day_two(config, dry_run, json, ask_sudo_password, lambda run, progress: run_upgrade(
        run, kube_version, serial=serial, ready_timeout=timeout, progress=progress))


@task(help=common_help(
        yes_destroy="the cluster's name: confirms without asking",
        all="also remove the NAT, the kubespray checkout and its venv",
        context="the kubeconfig context to remove (default: the cluster name)",
        dry_run="show what would run, change nothing"))
@exits_cleanly
def reset(c: Context, config: str = DEFAULT_CONFIG, yes_destroy: str = "",
          all: bool = False, context: str = "", dry_run: bool = False, json: bool = False,
          ask_sudo_password: bool = False) -> None:
    """Wipe the cluster with kubespray's reset.yml once you type its name."""
    from kubebastion.day2 import reset as reset_plan
    from kubebastion.day2.commands import reset_cluster

    def command(run: Run, progress: Callable[[Any], None]) -> DayTwoReport:
        confirmed = yes_destroy or (run.cluster.name if dry_run else
                                    _ask(reset_plan.prompt_text(run.cluster)))
        return reset_cluster(run, confirmed, everything=all, context=context or None,
                             progress=progress)

    _day_two(config, dry_run, json, ask_sudo_password, command)


def collection(command: str = DEFAULT_COMMAND) -> Collection:
    """A new collection of kubebastion's tasks (add your own to it freely). ``command`` is
    how the operator runs them (``invoke``, ``kubebastion``): messages that name a command
    to run next use it."""
    tasks = Collection(deploy, check, nat, kubespray, admin_conf, fetch_kubeconfig, tunnel,
                       remove_node, upgrade, reset)
    tasks.configure({CONFIG_SECTION: {"command": command}})
    return tasks
