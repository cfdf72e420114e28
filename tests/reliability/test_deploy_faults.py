"""kubespray failing, timing out, or losing a node, inside ``invoke deploy`` /
``invoke kubespray``: a report that names the host and the task, the playbook's log on
both sides, exit 1; then the next run resumes and does only what is missing.

The module starts from a lab whose cluster was never deployed, so the first failure
happens on a fresh lab, as it would for an operator.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import lab
from tests.reliability.conftest import RLAB_PARAMS, Figures
from tests.reliability.helpers import as_root, fresh, invoke, namespace_pids, write_config

#: The section title in docs/reliability.md.
TITLE = "kubespray failing, timing out or losing a node; the next run resumes"
pytestmark = pytest.mark.lab

PLAYBOOK_TIMEOUT = 4.0
#: ``timeout -k 30``: SIGTERM at the timeout, SIGKILL 30 s later if ansible lingers.
KILL_GRACE = 30.0


@pytest.fixture(scope="module")
def never_deployed(rlab: lab.LabState) -> lab.LabState:
    """The suite's lab with no cluster on it (rebuilt if an earlier module deployed one)."""
    if as_root(rlab, "k8s-m0", "test -e /etc/kubernetes/admin.conf").returncode == 0:
        lab.down(RLAB_PARAMS["name_prefix"], RLAB_PARAMS["user"], RLAB_PARAMS["state_dir"])
        lab.up(**RLAB_PARAMS)
    return fresh(rlab)


def victim_of(state: lab.LabState) -> str:
    return [n.name for n in state.nodes if n.role == "worker"][-1]


def deploy(config: Path, *args: str) -> tuple[int, dict[str, Any], float, str]:
    result = invoke("deploy", "--config", config, "--json", *args, timeout=900)
    return result.code, result.json(), result.seconds, result.stderr


def steps_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in report["steps"]}


def kubespray_rows(step: dict[str, Any], part: str) -> list[dict[str, Any]]:
    return [r for r in step["hosts"] if r["data"].get("part") == part]


def test_a_failing_playbook_stops_deploy_with_report_and_log_then_the_next_deploy_resumes(
        never_deployed: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    state = never_deployed
    victim = victim_of(state)
    failing = write_config(state, tmp_path / "failing", kubespray=True,
                           kubespray_vars={"lab_fail_on_host": victim})
    code, report, seconds, _ = deploy(failing)
    steps = steps_of(report)
    kubespray = steps.get("kubespray", {})
    detail = kubespray.get("detail", "")
    playbook = kubespray.get("extra", {}).get("playbook") or {}
    local_log = Path(playbook.get("local_log", "/nonexistent"))
    remote_log = str(playbook.get("remote_log", "/nonexistent"))
    remote_text = as_root(state, "bastion", f"cat {remote_log}").stdout
    reported = (code == 1 and report["failed_step"] == "kubespray"
                and f"{victim} failed at task [lab: injected failure]" in detail
                and remote_log in detail and str(local_log) in detail)
    logged = (local_log.is_file() and "injected failure" in local_log.read_text()
              and "injected failure" in remote_text)
    figures.record(f"kubespray fails on {victim} (`lab_fail_on_host`), `invoke deploy`",
                   "exit 1; report names host and task; log on the bastion and locally",
                   f"exit {code}, failed step {report['failed_step']}, logs "
                   f"{'kept' if logged else 'MISSING'}, {seconds:.0f} s", reported and logged,
                   detail=detail[:500])
    assert code == 1 and report["failed_step"] == "kubespray", report
    assert reported, detail
    assert logged
    assert steps["nat"]["status"] == "changed"
    assert steps["admin-conf"]["status"] == "skipped"
    assert steps["fetch-kubeconfig"]["status"] == "skipped"

    normal = write_config(state, tmp_path / "normal", kubespray=True)
    code, report, seconds, _ = deploy(normal)
    steps = steps_of(report)
    statuses = {name: step["status"] for name, step in steps.items()}
    rebuilt = [r["data"]["part"] for r in steps["kubespray"]["hosts"]
               if r["data"].get("part") in ("source", "venv") and r["status"] != "ok"]
    resumed = (statuses.get("preflight") == "ok" and statuses.get("nat") == "ok"
               and statuses.get("kubespray") == "changed" and not rebuilt)
    figures.record("the next `invoke deploy` after the kubespray failure",
                   "exit 0; finished steps unchanged (NAT, checkout, venv), kubespray and "
                   "later steps done", f"exit {code}, {seconds:.0f} s: "
                   + ", ".join(f"{k} {v}" for k, v in statuses.items()),
                   code == 0 and resumed, detail=str(report.get("failed_step") or ""))
    assert resumed, statuses
    assert not rebuilt
    assert code == 0, steps[report["failed_step"]]["detail"] if report["failed_step"] else ""


def wait_until_all_ready(state: lab.LabState, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = as_root(state, "k8s-m0", "kubectl --kubeconfig /etc/kubernetes/admin.conf get "
                      "nodes --no-headers --request-timeout=5s").stdout.splitlines()
        if len(out) == len(state.nodes) and all(line.split()[1] == "Ready" for line in out):
            return
        time.sleep(1)
    raise AssertionError(f"nodes not Ready again within {timeout:g} s")


def test_an_unreachable_node_fails_kubespray_and_the_rerun_does_only_the_missing_work(
        never_deployed: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    state = fresh(never_deployed)
    victim = victim_of(state)
    config = write_config(state, tmp_path, kubespray=True, extras={"connect_timeout": 3})
    warm = invoke("kubespray", "--config", config, "--json")
    assert warm.code == 0, warm.output[-3000:]
    home = f"/home/{state.user}"
    as_root(state, victim, f"sed -i '/kubebastion@bastion/d' {home}/.ssh/authorized_keys")
    lab.link_down(state, victim)
    try:
        failed = invoke("kubespray", "--config", config, "--json")
    finally:
        lab.link_up(state, victim)
    rows = failed.json()["rows"]
    bad = [r for r in rows if r["status"] == "failed"]
    others = [r for r in rows if r["data"].get("part") == "authorized_keys"
              and r["host"] != victim]
    named = [r["host"] for r in bad] == [victim] and victim in failed.stderr
    wait_until_all_ready(state)
    rerun = invoke("kubespray", "--config", config, "--json")
    changed = [(r["host"], r["data"].get("part")) for r in rerun.json()["rows"]
               if r["status"] != "ok"]
    figures.record(f"a node unreachable during `invoke kubespray` ({victim}: link down), "
                   "then back", "exit 1 naming it, the others done; the rerun changes only "
                   "what was missing", f"exit {failed.code} ({failed.seconds:.1f} s), then "
                   f"exit {rerun.code} changing {changed}",
                   failed.code == 1 and named and rerun.code == 0
                   and changed == [(victim, "authorized_keys")],
                   detail=bad[0]["detail"] if bad else "")
    assert failed.code == 1 and named, failed.output[-3000:]
    assert others and all(r["status"] == "ok" for r in others)
    assert failed.json()["playbook"] is None
    assert rerun.code == 0, rerun.output[-3000:]
    assert changed == [(victim, "authorized_keys")]


def ansible_processes(state: lab.LabState) -> list[str]:
    """Command lines of ansible-playbook processes still running on the bastion."""
    found = []
    for pid in namespace_pids(fresh(state).bastion.namespace):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"bin/ansible-playbook" in cmdline:
            found.append(f"{pid} " + cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_a_playbook_timeout_stops_deploy_then_the_next_deploy_resumes(
        never_deployed: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    state = fresh(never_deployed)
    # preflight off: kubespray's own checks are a playbook too, and the timeout under test
    # is the long run's (with them on, the checks time out first and the long run never
    # starts).
    slow = write_config(state, tmp_path / "slow", kubespray_settings={
        "timeout": PLAYBOOK_TIMEOUT, "preflight": False})
    code, report, seconds, _ = deploy(slow, "--force")
    steps = steps_of(report)
    kubespray = steps.get("kubespray", {})
    playbook = kubespray.get("extra", {}).get("playbook") or {}
    played = float(playbook.get("seconds", seconds))
    detail = kubespray.get("detail", "")
    left: list[str] = []
    deadline = time.monotonic() + KILL_GRACE + 10
    while time.monotonic() < deadline:
        left = ansible_processes(state)
        if not left:
            break
        time.sleep(1)
    reported = (code == 1 and report["failed_step"] == "kubespray"
                and f"timed out after {PLAYBOOK_TIMEOUT:g} s" in detail
                and Path(playbook.get("local_log", "/nonexistent")).is_file())
    bound = PLAYBOOK_TIMEOUT + KILL_GRACE + 5
    figures.seconds(f"kubespray playbook timeout ({PLAYBOOK_TIMEOUT:g} s), `invoke deploy`",
                    played, bound, f"exit 1, reported, log kept, playbook stopped ≤ timeout "
                    f"+ kill grace {KILL_GRACE:g} s + 5 s", detail=detail[:500],
                    ok=reported and not left)
    assert reported, report
    assert not left, left
    assert played <= bound

    normal = write_config(state, tmp_path / "normal", kubespray=True)
    code, report, seconds, _ = deploy(normal)
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    figures.record("the next `invoke deploy` after the playbook timeout", "exit 0",
                   f"exit {code}, {seconds:.0f} s: "
                   + ", ".join(f"{k} {v}" for k, v in statuses.items()), code == 0,
                   detail=str(report.get("failed_step") or ""))
    assert code == 0, report
