"""kubebastion's command line: `invoke --list` is the menu.

Tasks only parse options, build the run, call the library, print and set the exit code
(0 success, 1 a step failed, 2 bad inventory or usage).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from rich.markup import escape

from kubebastion import interrupt, secrets
from kubebastion.check import check_host
from kubebastion.egress.diagnose import FORWARDING_OFF, NO_MASQUERADE
from kubebastion.egress.task import run_egress_check
from kubebastion.errors import ConfigError, InventoryError, KubeBastionError
from kubebastion.nat.task import run_nat
from kubebastion.options import NodeCount, Port, PositiveCount, Seconds, task
from kubebastion.report import FAILED, HostOutcome, outcomes
from kubebastion.runtime import build_run
from kubebastion.ui.console import (
    console,
    err_console,
    failed_hosts,
    failure_summary,
    node_table,
    outcome_table,
    print_json,
)

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_CONFIG = "nornir_config.yaml"


def exit_for(exc: KubeBastionError) -> Exit:
    """The message and exit code an error ends a task with: 2 for bad inventory or usage,
    1 for a failure on the hosts."""
    code = 2 if isinstance(exc, (InventoryError, ConfigError)) else 1
    return Exit(secrets.redact(f"error: {exc}"), code)


def exits_cleanly(func: F) -> F:
    """Our errors end a task with a message and an exit code, never a traceback; Ctrl-C
    stops what runs on the hosts and says so in one line (exit 130)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with interrupt.handling_interrupts():
                return func(*args, **kwargs)
        except KeyboardInterrupt:
            raise Exit(interrupt.summary(func.__name__.replace("_", "-")),
                       interrupt.INTERRUPTED_CODE) from None
        except KubeBastionError as exc:
            raise exit_for(exc) from None

    return wrapper  # type: ignore[return-value]


def _password_prompt(ask_sudo_password: bool) -> None:
    if ask_sudo_password:
        secrets.prompt_sudo_password()


@task(help={"config": "Nornir config file", "json": "machine-readable output",
            "ask_sudo_password": "prompt for the sudo password",
            "egress": "also check that every node reaches the egress targets"})
@exits_cleanly
def check(c: Context, config: str = DEFAULT_CONFIG, json: bool = False,
          ask_sudo_password: bool = False, egress: bool = False) -> None:
    """Reach every host (nodes through the bastion): login, sudo, python3, OS."""
    _password_prompt(ask_sudo_password)
    run = build_run(config)
    try:
        rows = outcomes(run.nornir.run(task=check_host, name="check"))
        egress_rows = run_egress_check(run) if egress else []
    finally:
        run.close()
    if json:
        document = {"hosts": [r.as_dict() for r in rows]}
        if egress:
            document["egress"] = [r.as_dict() for r in egress_rows]
        print_json(document)
    else:
        console.print(outcome_table("check", rows, ["user", "sudo", "python3", "os_release"]))
        if egress:
            console.print(outcome_table("egress", _summarised(egress_rows), [
                "gateway", "reached", "ip_forward", "masquerade", "private_address", "provider"]))
            if any(r.detail in (FORWARDING_OFF, NO_MASQUERADE) for r in egress_rows):
                console.print("hint: `invoke nat` makes the bastion forward and masquerade")
    if failed_hosts(rows) or failed_hosts(egress_rows):
        summaries = [failure_summary(what, group) for what, group in
                     (("check", rows), ("egress", egress_rows)) if failed_hosts(group)]
        raise Exit("\n".join(summaries), 1)


def _summarised(rows: list[HostOutcome], detail_key: str | None = None) -> list[HostOutcome]:
    """``detail_key`` shows that data field instead of the diff on hosts that did not fail
    (the table escapes markup itself)."""
    safe = []
    for row in rows:
        detail = row.detail
        if detail_key and row.status != FAILED:
            detail = str(row.data.get(detail_key, ""))
        safe.append(HostOutcome(row.host, row.status, detail, row.data))
    return safe


@task(help={"config": "Nornir config file", "dry_run": "show the diff, change nothing",
            "remove": "undo exactly what nat added", "json": "machine-readable output",
            "ask_sudo_password": "prompt for the sudo password"})
@exits_cleanly
def nat(c: Context, config: str = DEFAULT_CONFIG, dry_run: bool = False, remove: bool = False,
        json: bool = False, ask_sudo_password: bool = False) -> None:
    """Make the bastion the private network's gateway: forwarding and masquerade, at boot too."""
    _password_prompt(ask_sudo_password)
    run = build_run(config, dry_run=dry_run)
    try:
        rows = run_nat(run, remove=remove)
    finally:
        run.close()
    if json:
        print_json({"hosts": [r.as_dict() for r in rows]})
    else:
        console.print(outcome_table("nat", _summarised(rows, "summary"),
                                    ["uplink", "private_cidr", "forward_jump"]))
        for row in rows:
            if row.status != FAILED and row.detail:
                console.print(row.detail, markup=False, highlight=False, soft_wrap=True)
    if failed_hosts(rows):
        raise Exit(failure_summary("nat", rows), 1)


@task(help={"config": "Nornir config file", "dry_run": "show the inventory diff and the "
            "commands, change nothing", "force": "run the playbook even if the cluster is up",
            "render_to": "only write the rendered kubespray inventory to this folder",
            "source": "kubespray git URL, local checkout or tarball (to upload)",
            "version": "kubespray tag or branch to clone (default v2.31.0)",
            "wheelhouse": "build the venv offline from wheels downloaded here",
            "timeout": "playbook timeout in seconds (default: the kubespray timeout "
                       "setting, 3600)", "log_dir": "local copy of the logs",
            "json": "machine-readable output",
            "attach": "only wait for a playbook that a lost run left running, and report it",
            "ask_sudo_password": "prompt for the sudo password",
            "preflight": "only kubespray's own checks: cluster.yml --tags facts,asserts",
            "skip_preflight": "do not run those checks before the long run",
            "tags": "ansible-playbook --tags (comma-separated)",
            "skip_tags": "ansible-playbook --skip-tags (comma-separated)",
            "limit": "ansible-playbook --limit (host pattern)",
            "extra_vars": "ansible-playbook -e: 'key=value ...' or JSON (more: the "
                          "kubespray extra_vars setting)",
            "source_sha256": "the tarball source's expected sha256, checked before upload"},
)
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
    from kubebastion.kubespray import deploy, inventory
    from kubebastion.ui import kubespray as display

    if preflight and (tags or skip_tags or skip_preflight):
        raise Exit("error: --preflight runs kubespray's own --tags facts,asserts: drop "
                   "--tags, --skip-tags and --skip-preflight", 2)
    _password_prompt(ask_sudo_password)
    run = build_run(config, dry_run=dry_run)
    try:
        if render_to:
            files = inventory.render_kubespray_inventory(run.cluster)
            for path in inventory.write_inventory_locally(files, Path(render_to)):
                console.print(f"wrote {path}", markup=False)
            return
        settings = deploy.settings_for(
            run, source=source or None, version=version or None,
            wheelhouse=wheelhouse or None, timeout=timeout or None, log_dir=log_dir or None,
            force=force, source_sha256=source_sha256 or None, tags=tags,
            skip_tags=skip_tags, limit=limit, extra_vars=[extra_vars] if extra_vars else [],
            preflight=False if skip_preflight else None)
        report = deploy.deploy_kubespray(
            run, settings, progress=display.ProgressPrinter(err_console if json else console),
            attach_only=attach, preflight_only=preflight)
    finally:
        run.close()
    if json:
        print_json(report.as_dict())
    else:
        display.print_report(report, console)
    if report.failed:
        raise Exit(failure_summary("kubespray", report.rows), 1)


@task(help={"config": "Nornir config file", "dry_run": "show what every step would change",
            "json": "one machine-readable report (schema: docs/deploy-report.schema.json)",
            "steps": "comma-separated steps to run (default: all)",
            "skip": "comma-separated steps to skip",
            "limit": "comma-separated hosts for preflight, egress and admin-conf",
            "force": "run kubespray's playbook even if the cluster is healthy",
            "context": "kubeconfig context name (default: the cluster name)",
            "no_switch": "do not make it the current context on the bastion",
            "timeout": "seconds to wait for every node Ready",
            "ask_sudo_password": "prompt for the sudo password"})
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
    from kubebastion.ui.progress import HostProgress, StepProgress, print_diffs, summary_table

    _password_prompt(ask_sudo_password)
    selected = select_steps(steps, skip)
    run = build_run(config, dry_run=dry_run)
    live = err_console if json else console
    run.nornir = run.nornir.with_processors([HostProgress(live)])
    options = DeployOptions(
        steps=selected, limit=[h.strip() for h in limit.split(",") if h.strip()],
        kubespray=settings_for(run, force=force), context=context or None,
        switch=not no_switch, ready_timeout=timeout)
    try:
        report = run_deploy(run, options, on_step=StepProgress(live),
                            progress=ProgressPrinter(live))
    finally:
        run.close()
    if json:
        print_json(report.as_dict())
    else:
        if report.dry_run:
            print_diffs(report, console)
        console.print(summary_table(report))
        console.print(f"total {report.seconds:.1f} s"
                      + (" (dry run: nothing was changed)" if report.dry_run else ""))
        fetched = next((s for s in report.steps if s.name == "fetch-kubeconfig"), None)
        if fetched is not None and fetched.extra.get("kubectl"):
            console.print("[bold]kubectl get nodes[/] (on the bastion)")
            console.print(escape(str(fetched.extra["kubectl"])))
        if report.next_command():
            console.print(f"next: {report.next_command()}")
    failed = report.failed_step
    if failed is not None:
        raise Exit(f"deploy failed at step {failed.name}: {failed.detail}", 1)


# --- the built-in lab ------------------------------------------------------------------

@task(help={"control_planes": "number of control-plane nodes",
            "workers": "number of worker nodes", "user": "login user on the lab hosts",
            "sudo_password": "require this sudo password (default: passwordless sudo)",
            "single_nic": "one bastion NIC, on the private network, which also reaches "
                          "the internet (a cloud bastion with a 1:1 NAT public address)"})
def lab_up(c: Context, control_planes: PositiveCount = 1, workers: NodeCount = 3,
           user: str = "kblab", sudo_password: str = "", single_nic: bool = False) -> None:
    """Bring up the lab: bastion, control planes, workers and an emulated internet."""
    import lab

    state = lab.up(control_planes=control_planes, workers=workers, user=user,
                   sudo_password=sudo_password or None, single_nic=single_nic)
    console.print(f"lab up: {state.nornir_config}")
    console.print(f"next: invoke check --config {os.path.relpath(state.nornir_config)}")


@task()
def lab_down(c: Context) -> None:
    """Remove the lab: namespaces, links, processes, user."""
    import lab

    lab.down()
    console.print("lab down")


@task(help={"json": "machine-readable output"})
def lab_status(c: Context, json: bool = False) -> None:
    """Show the lab's hosts and whether each sshd runs."""
    import lab

    status = lab.status()
    if json:
        print_json(status)
    else:
        console.print(status)


@task(help={"config": "Nornir config file", "dry_run": "show what would change",
            "json": "machine-readable output",
            "ask_sudo_password": "prompt for the sudo password"})
@exits_cleanly
def admin_conf(c: Context, config: str = DEFAULT_CONFIG, dry_run: bool = False,
               json: bool = False, ask_sudo_password: bool = False) -> None:
    """On each control plane: admin.conf becomes the login user's ~/.kube/config."""
    from kubebastion.admin_conf import run_admin_conf

    _password_prompt(ask_sudo_password)
    run = build_run(config, dry_run=dry_run)
    try:
        rows = run_admin_conf(run)
    finally:
        run.close()
    if json:
        print_json({"hosts": [r.as_dict() for r in rows]})
    else:
        console.print(outcome_table("admin-conf", rows, ["state", "path", "backup"]))
        for row in rows:
            if row.data.get("kubectl"):
                console.print(f"[bold]{row.host}[/]: kubectl get node")
                console.print(escape(str(row.data["kubectl"])))
    if failed_hosts(rows):
        raise Exit(failure_summary("admin-conf", rows), 1)


@task(optional=["local"],
      help={"config": "Nornir config file", "context": "context name (default: cluster name)",
            "no_switch": "do not make it the current context",
            "local": "also merge a tunnel context into this local kubeconfig "
                     "(default ~/.kube/config)",
            "tunnel_port": "local port of `invoke tunnel` for the --local context",
            "timeout": "seconds to wait for every node Ready",
            "dry_run": "show what would change", "json": "machine-readable output",
            "ask_sudo_password": "prompt for the sudo password"})
@exits_cleanly
def fetch_kubeconfig(c: Context, config: str = DEFAULT_CONFIG, context: str = "",
                     no_switch: bool = False, local: Any = None, tunnel_port: Port = 16443,
                     timeout: Seconds = 120, dry_run: bool = False, json: bool = False,
                     ask_sudo_password: bool = False) -> None:
    """Put the admin kubeconfig on the bastion (server rewritten, SANs checked), verify."""
    from kubebastion.kubeconfig.task import run_fetch_kubeconfig

    _password_prompt(ask_sudo_password)
    local_path = None
    if local is not None and local is not False:
        local_path = "~/.kube/config" if local is True or local == "" else str(local)
    run = build_run(config, dry_run=dry_run)
    try:
        report = run_fetch_kubeconfig(run, context=context or None, switch=not no_switch,
                                      local_path=local_path, tunnel_port=tunnel_port,
                                      ready_timeout=timeout)
    finally:
        run.close()
    if json:
        print_json(report.as_dict())
    else:
        console.print(outcome_table("fetch-kubeconfig", report.rows,
                                    ["context", "path", "server", "backup"]))
        for row in report.rows:
            if row.detail and row.status != "failed":
                console.print(escape(row.detail))
        if report.kubectl:
            console.print("[bold]kubectl get nodes[/] (on the bastion)")
            console.print(escape(report.kubectl))
        elif report.nodes:
            console.print(node_table(report.nodes))
    if report.failed:
        raise Exit(failure_summary("fetch-kubeconfig", report.rows), 1)


@task(help={"config": "Nornir config file", "port": "local port to listen on",
            "bind": "local address to listen on"})
@exits_cleanly
def tunnel(c: Context, config: str = DEFAULT_CONFIG, port: Port = 16443,
           bind: str = "127.0.0.1") -> None:
    """Forward a local port to the API server through the bastion, until Ctrl-C."""
    import signal
    import threading

    from kubebastion.api import bastion_opener
    from kubebastion.ssh.tunnel import forward

    run = build_run(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster = run.cluster
        opener = bastion_opener(run.nornir, cluster)
        target = cluster.api_server_address
        with forward(opener, target, cluster.api_port, port, bind) as local_port:
            console.print(f"tunnel: {bind}:{local_port} -> {target}:{cluster.api_port} "
                          f"via {cluster.bastion.name} (Ctrl-C to stop)")
            try:
                while not stop.wait(1):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        run.close()


def _collection() -> Collection:
    root = Collection(deploy, check, nat, kubespray, admin_conf, fetch_kubeconfig, tunnel)
    lab_tasks = Collection("lab")
    lab_tasks.add_task(lab_up, "up")
    lab_tasks.add_task(lab_down, "down")
    lab_tasks.add_task(lab_status, "status")
    root.add_collection(lab_tasks)
    return root


namespace = _collection()
