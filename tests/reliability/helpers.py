"""Helpers of the reliability suite: running ``invoke``, a copy of the lab's inventory with
edits, commands inside lab hosts, and Nornir runs timed per host."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Result, Task

import lab
from kubebastion.runtime import Run, build_run
from tests.lab.helpers import INVOKE, REPO, STAND_IN, WHEELHOUSE

#: Environment variables a test run must not inherit from the shell that started pytest.
SCRUBBED_ENV = ("KUBEBASTION_SUDO_PASSWORD", "KUBEBASTION_TEST_PAUSE_BEFORE_RENAME")


# --- invoke ---------------------------------------------------------------------------


@dataclass
class Invocation:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> dict[str, Any]:
        try:
            document = json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"no JSON (exit {self.code}):\n{self.output[-3000:]}") from exc
        assert isinstance(document, dict)
        return document

    def rows(self) -> dict[str, dict[str, Any]]:
        """``{"hosts": [...]}`` reports by host."""
        return {row["host"]: row for row in self.json()["hosts"]}


def invoke_env(env: dict[str, str] | None = None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    full["COLUMNS"] = "200"  # rich folds tables to the terminal's width
    full.update(env or {})
    return full


def invoke(*args: str | Path, env: dict[str, str] | None = None,
           timeout: float = 600) -> Invocation:
    started = time.monotonic()
    proc = subprocess.run([INVOKE, *map(str, args)], cwd=REPO, env=invoke_env(env),
                          capture_output=True, text=True, timeout=timeout, check=False)
    return Invocation(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def spawn_invoke(*args: str | Path, env: dict[str, str] | None = None
                 ) -> subprocess.Popen[str]:
    return subprocess.Popen([INVOKE, *map(str, args)], cwd=REPO, env=invoke_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], started: float, timeout: float = 600) -> Invocation:
    out, err = proc.communicate(timeout=timeout)
    return Invocation(proc.returncode, out, err, time.monotonic() - started)


# --- inventory copies -----------------------------------------------------------------


@dataclass
class Inventory:
    """The three inventory files as data, to edit before writing."""

    hosts: dict[str, Any]
    groups: dict[str, Any]
    defaults: dict[str, Any]

    @property
    def extras(self) -> dict[str, Any]:
        fabric = self.defaults.setdefault("connection_options", {}).setdefault("fabric", {})
        extras: dict[str, Any] = fabric.setdefault("extras", {})
        return extras

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.defaults.setdefault("data", {})
        return data

    def host_extras(self, name: str, **overrides: Any) -> None:
        """Per-host extras: Nornir takes a host's ``extras`` whole (no merge with the
        defaults'), so start from a copy of the defaults'."""
        extras = {**copy.deepcopy(self.extras), **overrides}
        self.hosts[name]["connection_options"] = {"fabric": {"extras": extras}}


def lab_inventory(state: lab.LabState) -> Inventory:
    def load(name: str) -> dict[str, Any]:
        data = yaml.safe_load((state.inventory_dir / name).read_text()) or {}
        assert isinstance(data, dict)
        return data
    return Inventory(load("hosts.yaml"), load("groups.yaml"), load("defaults.yaml"))


def write_config(state: lab.LabState, folder: Path, *,
                 edit: Callable[[Inventory], None] | None = None,
                 extras: dict[str, Any] | None = None, kubespray: bool = False,
                 kubespray_settings: dict[str, Any] | None = None,
                 kubespray_vars: dict[str, Any] | None = None) -> Path:
    """A copy of the lab's inventory in ``folder`` (edited), with its own nornir.log;
    returns its nornir_config.yaml. ``kubespray``: settings that upload the lab's
    stand-in and build the bastion's venv from the local wheelhouse; ``kubespray_vars``
    are added to the lab's."""
    folder.mkdir(parents=True, exist_ok=True)
    inventory = lab_inventory(state)
    inventory.extras.update(extras or {})
    if kubespray or kubespray_settings:
        inventory.data["kubespray"] = {"source": str(STAND_IN), "wheelhouse": str(WHEELHOUSE),
                                       "ready_timeout": 60, **(kubespray_settings or {})}
    if kubespray_vars:
        inventory.data.setdefault("kubespray_vars", {}).update(kubespray_vars)
    if edit is not None:
        edit(inventory)
    files = folder / "inventory"
    files.mkdir(exist_ok=True)
    for name, data in (("hosts.yaml", inventory.hosts), ("groups.yaml", inventory.groups),
                       ("defaults.yaml", inventory.defaults)):
        (files / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return lab.config_beside(state, folder)


# --- inside lab hosts -----------------------------------------------------------------


def fresh(state: lab.LabState) -> lab.LabState:
    """The lab as recorded now (sshd pids and host keys change when sshds restart)."""
    return lab.load_state(state.state_dir) or state


def as_root(state: lab.LabState, host: str, script: str, *, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return lab.host_exec(fresh(state), host, ["sh", "-c", script], input=input,
                         timeout=timeout)


def as_user(state: lab.LabState, host: str, script: str, *, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return lab.host_exec(fresh(state), host, ["runuser", "-u", state.user, "--", "sh", "-c",
                                              script], input=input, timeout=timeout)


def host_argv(state: lab.LabState, host: str, argv: Sequence[str]) -> list[str]:
    """``argv`` entering the host's namespaces, for ``subprocess.Popen``."""
    pid = fresh(state).host(host).sshd_pid
    return ["nsenter", "-t", str(pid), "-n", "-m", "-u", "--", *argv]


def session_sshds(state: lab.LabState, host: str) -> list[int]:
    """The sshd processes serving logins on a lab host (every sshd but the listener)."""
    current = fresh(state).host(host)
    pids = []
    for pid in namespace_pids(current.namespace):
        if pid == current.sshd_pid:
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("sshd"):
            pids.append(pid)
    return pids


def namespace_pids(namespace: str) -> list[int]:
    return lab.pids_in_namespaces([namespace]).get(namespace, [])


def kill_pids(pids: Iterable[int], sig: int = 9) -> int:
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, sig)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def bastion_back(state: lab.LabState, timeout: float = 30) -> None:
    """``lab.link_up`` and wait until the bastion answers TCP again: connects made while
    its link was down leave a failed ARP entry, and for a few seconds the kernel then
    refuses new connects at once (EHOSTUNREACH)."""
    lab.link_up(state, "bastion")
    address = fresh(state).bastion.ssh_address
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, 22), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def accepted_logins(state: lab.LabState) -> dict[str, int]:
    current = fresh(state)
    return {h.name: h.sshd_log.read_text().count("Accepted publickey") for h in current.hosts}


# --- timed Nornir runs ----------------------------------------------------------------


@dataclass
class HostTimer:
    """A Nornir processor: seconds from the run's start to each host's result."""

    started: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def task_started(self, task: Task) -> None:
        self.started = time.monotonic()

    def task_completed(self, task: Task, result: AggregatedResult) -> None:
        return None

    def task_instance_started(self, task: Task, host: Host) -> None:
        return None

    def task_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        with self.lock:
            self.seconds[host.name] = time.monotonic() - self.started

    def subtask_instance_started(self, task: Task, host: Host) -> None:
        return None

    def subtask_instance_completed(self, task: Task, host: Host, result: MultiResult) -> None:
        return None


def timed_run(config: Path, task: Callable[..., Result], *,
              adjust: Callable[[Run], None] | None = None, **kwargs: Any
              ) -> tuple[AggregatedResult, dict[str, float]]:
    """``task`` on every host of ``config`` in this process; (results, seconds per host).
    Connections are closed before returning."""
    run = build_run(config)
    timer = HostTimer()
    try:
        if adjust is not None:
            adjust(run)
        results = run.nornir.with_processors([timer]).run(task=task, **kwargs)
    finally:
        run.close()
    return results, dict(timer.seconds)


def exception_text(results: AggregatedResult, host: str) -> str:
    multi = results[host]
    exc = next((r.exception for r in multi if r.exception is not None), None)
    return f"{type(exc).__name__}: {exc}" if exc is not None else str(multi[0].result)
