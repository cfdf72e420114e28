"""Interrupted, concurrent and lost runs (issue 13): Ctrl-C while the venv is built then a
rerun, two fresh deploys at once, the operator's process killed while the playbook runs
then a deploy that re-attaches. Each trial must end with a working cluster or a clean
refusal, never with a bastion that needs repairs by hand.

Lean on purpose: one prepared lab for the module, the stand-in playbook, and trials that
wipe only what they need (the checkout and the venv, not the cluster).
"""

from __future__ import annotations

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
    spawn_invoke,
    write_config,
)

#: The section title in docs/reliability.md.
TITLE = "Interrupted, concurrent and lost runs: nothing stuck, nothing raced"
pytestmark = pytest.mark.lab

TRIALS = 5
LOCKED = "is locked by `deploy`"
#: Seconds for the loser to connect, find the lock held and say so.
REFUSAL_BOUND = 10.0


@pytest.fixture(scope="module")
def config(rlab: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(rlab, tmp_path_factory.mktemp("interrupts"), kubespray=True)


def wipe_bastion(state: lab.LabState) -> None:
    """A fresh bastion for kubespray: no checkout, no venv (the cluster stays)."""
    home = f"/home/{state.user}"
    done = as_root(state, "bastion", f"rm -rf {home}/kubespray {home}/kubespray.* "
                   f"{home}/kubespray-venv {home}/kubespray-venv.*")
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
