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

from kubebastion import secrets
from kubebastion.console import console, err_console, failed_hosts, outcome_table, print_json
from kubebastion.errors import ConfigError, InventoryError, KubeBastionError
from kubebastion.report import outcomes
from kubebastion.runtime import build_run
from kubebastion.steps.check import check_host

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
            "ask_sudo_password": "prompt for the sudo password"})
@exits_cleanly
def check(c: Context, config: str = DEFAULT_CONFIG, json: bool = False,
          ask_sudo_password: bool = False) -> None:
    """Reach every host (nodes through the bastion): login, sudo, python3, OS."""
    _password_prompt(ask_sudo_password)
    run = build_run(config)
    try:
        rows = outcomes(run.nornir.run(task=check_host, name="check"))
    finally:
        run.close()
    if json:
        print_json({"hosts": [r.as_dict() for r in rows]})
    else:
        console.print(outcome_table("check", rows, ["user", "sudo", "python3", "os_release"]))
    failed = failed_hosts(rows)
    if failed:
        raise Exit(f"check failed on: {', '.join(failed)}", 1)


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
    root = Collection(check)
    lab_tasks = Collection("lab")
    lab_tasks.add_task(lab_up, "up")
    lab_tasks.add_task(lab_down, "down")
    lab_tasks.add_task(lab_status, "status")
    root.add_collection(lab_tasks)
    return root


namespace = _collection()
_ = (Path, err_console)
