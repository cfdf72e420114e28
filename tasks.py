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
from invoke.tasks import task
from rich.markup import escape

from kubebastion import secrets
from kubebastion.console import (
    console,
    err_console,
    failed_hosts,
    failure_summary,
    outcome_table,
    print_json,
)
from kubebastion.errors import ConfigError, InventoryError, KubeBastionError
from kubebastion.nat import FORWARDING_OFF, NO_MASQUERADE
from kubebastion.report import FAILED, HostOutcome, outcomes
from kubebastion.runtime import build_run
from kubebastion.steps.check import check_host
from kubebastion.steps.egress import run_egress_check
from kubebastion.steps.nat import run_nat

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_CONFIG = "nornir_config.yaml"


def exits_cleanly(func: F) -> F:
    """Map our errors to exit codes and a one-paragraph message, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (InventoryError, ConfigError) as exc:
            raise Exit(secrets.redact(f"error: {exc}"), 2) from None
        except KubeBastionError as exc:
            raise Exit(secrets.redact(f"error: {exc}"), 1) from None

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
            console.print(outcome_table("egress", _escaped(egress_rows), [
                "gateway", "reached", "ip_forward", "masquerade", "private_address"]))
            if any(r.detail in (FORWARDING_OFF, NO_MASQUERADE) for r in egress_rows):
                console.print("hint: `invoke nat` makes the bastion forward and masquerade")
    failed = failed_hosts(rows) + [f"{h} (egress)" for h in failed_hosts(egress_rows)]
    if failed:
        raise Exit(f"check failed on: {', '.join(failed)}", 1)


def _escaped(rows: list[HostOutcome], detail_key: str | None = None) -> list[HostOutcome]:
    """Rows safe for a rich table (diffs and errors hold brackets rich would eat);
    ``detail_key`` shows that data field instead of the diff on hosts that did not fail."""
    safe = []
    for row in rows:
        detail = row.detail
        if detail_key and row.status != FAILED:
            detail = str(row.data.get(detail_key, ""))
        safe.append(HostOutcome(row.host, row.status, escape(detail), row.data))
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
        console.print(outcome_table("nat", _escaped(rows, "summary"),
                                    ["uplink", "private_cidr", "forward_jump"]))
        for row in rows:
            if row.status != FAILED and row.detail:
                console.print(row.detail, markup=False, highlight=False, soft_wrap=True)
    if failed_hosts(rows):
        raise Exit(failure_summary("nat", rows), 1)


# --- the built-in lab ------------------------------------------------------------------

@task(help={"control_planes": "number of control-plane nodes",
            "workers": "number of worker nodes", "user": "login user on the lab hosts",
            "sudo_password": "require this sudo password (default: passwordless sudo)"})
def lab_up(c: Context, control_planes: int = 1, workers: int = 3, user: str = "kblab",
           sudo_password: str = "") -> None:
    """Bring up the lab: bastion, control planes, workers and an emulated internet."""
    import lab

    state = lab.up(control_planes=control_planes, workers=workers, user=user,
                   sudo_password=sudo_password or None)
    console.print(f"lab up: {state.nornir_config}")
    console.print(f"next: invoke check --config {os.path.relpath(state.nornir_config)}")


@task
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


def _collection() -> Collection:
    root = Collection(check, nat)
    lab_tasks = Collection("lab")
    lab_tasks.add_task(lab_up, "up")
    lab_tasks.add_task(lab_down, "down")
    lab_tasks.add_task(lab_status, "status")
    root.add_collection(lab_tasks)
    return root


namespace = _collection()
_ = (Path, err_console)
