"""Interrupted, concurrent and lost runs (issue 13): Ctrl-C while the venv is built then a
rerun, two fresh deploys at once, the operator's process killed while the playbook runs
then a deploy that re-attaches. Each trial must end with a working cluster or a clean
refusal, never with a bastion that needs repairs by hand.

Lean on purpose: one prepared lab for the module, the stand-in playbook, and trials that
wipe only what they need (the checkout and the venv, not the cluster).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import lab
from tests.reliability.conftest import Figures
from tests.reliability.helpers import (
    Invocation,
    as_root,
    finish,
    fresh,
    invoke,
    spawn_invoke,
    write_config,
)

#: The section title in docs/reliability.md.
TITLE = "Interrupted, concurrent and lost runs: nothing stuck, nothing raced"
pytestmark = pytest.mark.lab

TRIALS = 5
#: Five trials that each build a fresh venv of kubespray's requirements (ansible: tens of
#: megabytes) outlast the suite's default 300 s per test.
TRIALS_TIMEOUT = 1200
LOCKED = "is locked by `deploy`"
#: Seconds for the loser to connect, find the lock held and say so.
REFUSAL_BOUND = 10.0
INTERRUPTED = 130
#: After Ctrl-C: seconds until the operator's process exits, and until nothing of the
#: interrupted work runs on the bastion.
EXIT_BOUND = 5.0
STOP_BOUND = 5.0


@pytest.fixture(scope="module")
def config(rlab: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(rlab, tmp_path_factory.mktemp("interrupts"), kubespray=True)


def wipe_bastion(state: lab.LabState) -> None:
    """A fresh bastion for kubespray: no checkout, no venv (the cluster stays). The venv's
    link only: removing tens of thousands of files of a built venv takes minutes on a
    loaded machine, and the next run removes the unlinked build itself."""
    home = f"/home/{state.user}"
    done = as_root(state, "bastion", f"rm -rf {home}/kubespray {home}/kubespray.*; "
                   f"rm -f {home}/kubespray-venv", timeout=300)
    assert done.returncode == 0, done.stderr


def finish_all(procs: list[subprocess.Popen[str]], started: float) -> list[Invocation]:
    """Wait for every process, each timed to its own end (not to the slowest one's)."""
    results: list[Invocation | None] = [None] * len(procs)

    def wait(index: int) -> None:
        results[index] = finish(procs[index], started, timeout=600)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(procs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def deploy_ok(result: Invocation) -> bool:
    """Exit 0 and every node Ready in the report."""
    if result.code != 0:
        return False
    report: dict[str, Any] = result.json()
    steps = {s["name"]: s for s in report["steps"]}
    health = steps.get("fetch-kubeconfig", {}).get("extra", {}).get("health", {})
    return bool(report["ok"]) and bool(health.get("healthy"))


def clean_refusal(result: Invocation) -> bool:
    """Exit 1 at once, one line naming the holder, no report."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return (result.code == 1 and not result.stdout.strip() and len(lines) == 1
            and LOCKED in lines[0] and "pid " in lines[0] and "since " in lines[0])


@pytest.mark.timeout(TRIALS_TIMEOUT)
def test_two_fresh_deploys_at_once_one_finishes_the_other_refuses_cleanly(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    state = fresh(rlab)
    outcomes: list[str] = []
    refusal_seconds: list[float] = []
    broken: list[str] = []
    for trial in range(TRIALS):
        wipe_bastion(state)
        started = time.monotonic()
        procs = [spawn_invoke("deploy", "--config", config, "--json") for _ in range(2)]
        results = finish_all(procs, started)
        kinds = []
        for result in results:
            if deploy_ok(result):
                kinds.append("ok")
            elif clean_refusal(result):
                kinds.append("refused")
                refusal_seconds.append(result.seconds)
            else:
                kinds.append("BROKEN")
                broken.append(f"trial {trial}: exit {result.code}: "
                              f"{result.output.strip()[-400:]}")
        outcomes.append("+".join(sorted(kinds)))
    good = sum(1 for o in outcomes if o in ("ok+refused", "ok+ok"))
    slowest = max(refusal_seconds, default=0.0)
    figures.seconds("the refused one of two simultaneous deploys: time to its one-line "
                    "refusal (slowest of the trials)", slowest, REFUSAL_BOUND)
    figures.count(f"two fresh `invoke deploy` at once (checkout and venv wiped), {TRIALS} "
                  "trials", good, TRIALS, "trials with a working cluster",
                  "each trial: one working cluster, the other run refused in one line "
                  "naming the holder (or finished too); never broken",
                  detail=f"outcomes {outcomes}; slowest refusal {slowest:.1f} s; "
                  + "; ".join(broken)[:600], ok=not broken)
    assert not broken, broken
    assert good == TRIALS, outcomes
    assert slowest <= REFUSAL_BOUND


def bastion_processes(state: lab.LabState, *needles: bytes) -> list[int]:
    return lab.pids_running(fresh(state).bastion.namespace, *needles)


def wait_for(check: Any, timeout: float, step: float = 0.05) -> Any:
    """``check()`` until it returns something true, or the timeout (then its last value)."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = check()
    return value


@pytest.mark.timeout(TRIALS_TIMEOUT)
def test_ctrl_c_while_the_venv_is_built_then_a_rerun_ends_with_a_working_cluster(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    """Each trial: the venv is removed, ``invoke deploy`` gets SIGINT while the installer
    (uv, or pip without it) installs, must exit 130 at once with one line naming the venv
    build, leave no installer running,
    and the next ``invoke deploy`` must clean the half-built venv and end with every node
    Ready."""
    state = fresh(rlab)
    home = f"/home/{state.user}"
    warm = invoke("deploy", "--config", config, "--json", timeout=600)
    assert deploy_ok(warm), warm.output[-3000:]
    problems: list[str] = []
    exits: list[float] = []
    stopped: list[float] = []
    for trial in range(TRIALS):
        as_root(state, "bastion", f"rm -f {home}/kubespray-venv")  # see wipe_bastion
        started = time.monotonic()
        proc = spawn_invoke("deploy", "--config", config)
        # the installer itself (argv .../uv pip install ... or .../bin/pip install ...),
        # not the script naming it
        pip = wait_for(lambda: bastion_processes(state, b"pip\0install\0"), 300)
        if not pip:
            proc.kill()
            problems.append(f"trial {trial}: no pip install seen")
            finish(proc, started)
            continue
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        result = finish(proc, started, timeout=120)
        exits.append(time.monotonic() - signalled)
        left = wait_for(lambda: not bastion_processes(state, b"kubespray-venv"), STOP_BOUND,
                        step=0.1)
        stopped.append(time.monotonic() - signalled)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        said = (len(lines) == 1 and lines[0].startswith("interrupted `invoke deploy` at step "
                                                       "kubespray") and "venv build" in lines[0]
                and "next run removes" in lines[0])
        if result.code != INTERRUPTED or not said or not left:
            problems.append(f"trial {trial}: exit {result.code}, stderr {result.stderr[-300:]!r}"
                            f", still running on the bastion: {not left}")
        rerun = invoke("deploy", "--config", config, "--json", timeout=600)
        if not deploy_ok(rerun):
            problems.append(f"trial {trial}: the rerun: exit {rerun.code}: "
                            f"{rerun.output.strip()[-400:]}")
            continue
        venv_rows = [r for s in rerun.json()["steps"] for r in s["hosts"]
                     if r["data"].get("part") == "venv"]
        interrupted = re.search(r"venv build in (\S+);", result.stderr)
        if not venv_rows or not interrupted or interrupted.group(1) not in (
                venv_rows[0]["detail"]):
            problems.append(f"trial {trial}: the rerun did not clean the half-built venv: "
                            f"{venv_rows}")
    figures.count(f"Ctrl-C while `invoke deploy` builds the venv, then a rerun, {TRIALS} "
                  "trials", TRIALS - len({p.split(':')[0] for p in problems}), TRIALS,
                  "trials with a working cluster", "each trial: exit 130 with one line, pip "
                  "stopped on the bastion, the rerun cleans the half-built venv and ends with "
                  "every node Ready", detail="; ".join(problems)[:600], ok=not problems)
    figures.seconds("Ctrl-C during the venv build: until the operator's exit 130 (slowest)",
                    max(exits, default=0.0), EXIT_BOUND)
    figures.seconds("Ctrl-C during the venv build: until nothing of it runs on the bastion "
                    "(slowest)", max(stopped, default=0.0), STOP_BOUND)
    assert not problems, problems
    assert max(exits) <= EXIT_BOUND and max(stopped) <= STOP_BOUND


#: In the argv of the playbook's processes (``timeout`` and ansible's python), not in a
#: script that only names it (the venv check does).
PLAYBOOK_ARGV = b"bin/ansible-playbook\0-i\0"
#: The stand-in playbook's pause: long enough to kill the operator and start the next run
#: while it runs, even on a loaded machine.
PAUSE = 15


@pytest.mark.timeout(600)
def test_a_killed_operator_leaves_the_playbook_running_and_the_next_deploy_reattaches(
        rlab: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    """kill -9 of ``invoke deploy`` while the playbook runs: the playbook goes on; the next
    ``invoke deploy`` takes the (released) lock, finds the playbook by its run file, follows
    its log to its end, reads its recap and carries on with admin-conf and
    fetch-kubeconfig."""
    state = fresh(rlab)
    slow = write_config(state, tmp_path, kubespray=True,
                        kubespray_vars={"lab_pause_seconds": PAUSE})
    started = time.monotonic()
    proc = spawn_invoke("deploy", "--config", slow, "--force")
    seen = wait_for(lambda: bastion_processes(state, PLAYBOOK_ARGV), 300)
    assert seen, finish(proc, started).output[-3000:]
    time.sleep(1)
    proc.kill()
    proc.communicate(timeout=60)
    killed = time.monotonic()
    still = bool(bastion_processes(state, PLAYBOOK_ARGV))
    rerun = invoke("deploy", "--config", slow, "--json", timeout=600)
    finished = time.monotonic() - killed
    report = rerun.json() if rerun.stdout.strip() else {}
    steps = {s["name"]: s for s in report.get("steps", [])}
    playbook = steps.get("kubespray", {}).get("extra", {}).get("playbook") or {}
    remote_log = str(playbook.get("remote_log", ""))
    log_there = bool(remote_log) and as_root(state, "bastion", f"test -s {remote_log}"
                                             ).returncode == 0
    attached = "attached to the playbook started" in rerun.stderr
    ok = (still and deploy_ok(rerun) and attached and bool(playbook.get("recap"))
          and playbook.get("exit_code") == 0 and log_there
          and Path(str(playbook.get("local_log", "/nonexistent"))).is_file()
          and steps.get("admin-conf", {}).get("status") in ("ok", "changed"))
    figures.seconds(f"kill -9 of `invoke deploy` during the playbook ({PAUSE} s pause), then "
                    "`invoke deploy`: re-attached, recap read, admin-conf and "
                    "fetch-kubeconfig done", finished, PAUSE + 60.0,
                    "exit 0, re-attached to the same log (exists), recap read; within the "
                    "pause + 60 s", detail=f"exit {rerun.code}; playbook kept running: {still}"
                    f"; attached: {attached}; log {remote_log}", ok=ok)
    assert still, "the playbook died with the operator's process"
    assert attached and deploy_ok(rerun), rerun.output[-3000:]
    assert playbook.get("exit_code") == 0 and playbook.get("recap"), playbook
    assert log_there, remote_log
    assert finished <= PAUSE + 60.0
