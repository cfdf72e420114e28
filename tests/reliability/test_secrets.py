"""The sudo password: a wrong one fails clearly and quickly; the right one (a sentinel)
and the wrong one appear nowhere: not in stdout or stderr, nornir.log, the JSON reports,
the kubespray logs on either side, tracebacks, nor any process's command line.

The lab's sudo asks for a password for the whole module (``lab.up(sudo_password=...)``),
so every step really sends it.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import lab
from kubebastion.secrets import SUDO_PASSWORD_ENV
from tests.reliability.conftest import RLAB_PARAMS, Figures
from tests.reliability.helpers import Invocation, as_root, fresh, invoke, write_config

#: The section title in docs/reliability.md.
TITLE = "The sudo password: a wrong one, and leaks"
pytestmark = pytest.mark.lab

SENTINEL = "kbr-Sentinel-" + secrets.token_hex(6)
WRONG = "kbr-Wrong-" + secrets.token_hex(6)
WRONG_PASSWORD_BOUND = 15.0


@pytest.fixture(scope="module")
def password_lab(rlab: lab.LabState) -> Iterator[lab.LabState]:
    """The suite's lab with sudo asking for SENTINEL; passwordless again afterwards."""
    lab.up(**RLAB_PARAMS, sudo_password=SENTINEL)
    yield fresh(rlab)
    lab.up(**RLAB_PARAMS)


@contextmanager
def command_line_watch(needles: list[str]) -> Iterator[list[str]]:
    """Every process command line on the machine, sampled while the block runs, that
    holds one of ``needles``."""
    found: list[str] = []
    stop = threading.Event()
    raw = [n.encode() for n in needles]

    def sample() -> None:
        while not stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if any(n in cmdline for n in raw):
                    found.append(f"{entry.name}: {cmdline[:200]!r}")
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join(10)


def test_a_wrong_sudo_password_fails_clearly_in_bounded_time(
        password_lab: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    config = write_config(password_lab, tmp_path)
    hosts = {h.name for h in password_lab.hosts}
    problems = []
    for command in ("check", "nat"):
        run = invoke(command, "--config", config, "--json", env={SUDO_PASSWORD_ENV: WRONG})
        rows = run.rows() if run.stdout.strip().startswith("{") else {}
        expected = hosts if command == "check" else {"bastion"}
        clear = (run.code == 1 and set(rows) == expected
                 and all(r["status"] == "failed" and "sudo rejected the password" in r["detail"]
                         for r in rows.values()))
        detail = next(iter(rows.values()), {}).get("detail", run.stderr[-300:])
        figures.seconds(f"wrong sudo password, `invoke {command}`", run.seconds,
                        WRONG_PASSWORD_BOUND, f"exit 1, 'sudo rejected the password' on every "
                        f"host, ≤ {WRONG_PASSWORD_BOUND:g} s", ok=clear, detail=detail)
        if not clear:
            problems.append(f"{command}: exit {run.code}: {detail}")
        if run.seconds > WRONG_PASSWORD_BOUND:
            problems.append(f"{command}: {run.seconds:.1f} s")
    assert not problems, problems
    missing = invoke("check", "--config", config)
    assert missing.code == 1 and "sudo needs a password" in missing.output


def test_the_password_appears_nowhere(password_lab: lab.LabState, tmp_path: Path,
                                      figures: Figures) -> None:
    state = password_lab
    victim = [n.name for n in state.nodes if n.role == "worker"][-1]
    config = write_config(state, tmp_path / "good", kubespray=True)
    failing = write_config(state, tmp_path / "failing", kubespray=True,
                           kubespray_vars={"lab_fail_on_host": victim})
    right = {SUDO_PASSWORD_ENV: SENTINEL}
    wrong = {SUDO_PASSWORD_ENV: WRONG}
    runs: dict[str, Invocation] = {}
    with command_line_watch([SENTINEL, WRONG]) as on_command_lines:
        runs["check"] = invoke("check", "--config", config, "--json", env=right)
        runs["deploy --force"] = invoke("deploy", "--config", config, "--json", "--force",
                                        env=right)
        runs["kubespray (failing)"] = invoke("kubespray", "--config", failing, "--json",
                                             "--force", env=right)
        runs["check (wrong password)"] = invoke("check", "--config", config, env=wrong)
        runs["nat (wrong password)"] = invoke("nat", "--config", config, env=wrong)
        lab.link_down(state, victim)
        try:
            runs["check (a node down)"] = invoke("check", "--config", config, "--json",
                                                 env=right)
        finally:
            lab.link_up(state, victim)
    expected = {"check": 0, "deploy --force": 0, "kubespray (failing)": 1,
                "check (wrong password)": 1, "nat (wrong password)": 1,
                "check (a node down)": 1}
    codes = {name: run.code for name, run in runs.items()}

    texts: dict[str, str] = {}
    for name, run in runs.items():
        texts[f"{name}: stdout"] = run.stdout
        texts[f"{name}: stderr"] = run.stderr
    for path in [tmp_path / "good" / "nornir.log", tmp_path / "failing" / "nornir.log",
                 *sorted((tmp_path / "good" / "logs").glob("*.log")),
                 *sorted((tmp_path / "failing" / "logs").glob("*.log"))]:
        texts[str(path.relative_to(tmp_path))] = path.read_text()
    remote_logs = as_root(state, "bastion", f"cat /home/{state.user}/kubebastion-logs/*.log")
    texts["bastion: ~/kubebastion-logs/*.log"] = remote_logs.stdout
    leftovers = as_root(state, "bastion", f"ls -a /home/{state.user}/kubebastion-logs"
                        ).stdout.split()
    texts["process command lines"] = "\n".join(on_command_lines)
    hits = {name: text.count(SENTINEL) + text.count(WRONG) for name, text in texts.items()}
    leaks = {name: n for name, n in hits.items() if n}
    tracebacks = sum(text.count("Traceback (most recent call last)") for text in texts.values())
    size = sum(len(text) for text in texts.values())
    figures.count("sudo password (sentinel) and a wrong one, across `check`, `deploy --force` "
                  "(NAT, kubespray's playbook with become, admin-conf, fetch-kubeconfig), a "
                  "failing kubespray, wrong-password and node-down runs", sum(hits.values()),
                  0, "occurrences",
                  "0 in stdout, stderr, nornir.log, JSON reports, kubespray logs (both "
                  "sides), tracebacks, command lines",
                  detail=f"{len(texts)} texts, {size // 1024} KiB, {tracebacks} tracebacks "
                         f"scanned; leaks: {leaks or 'none'}; exit codes {codes}",
                  ok=codes == expected)
    assert not leaks, leaks
    assert tracebacks > 0, "no traceback was scanned: the failure runs did not fail"
    assert codes == expected, {n: runs[n].output[-1500:] for n in codes if codes[n] != expected[n]}
    assert not [name for name in leftovers if name.startswith(".become")]


def test_a_password_that_also_occurs_in_the_data_corrupts_nothing(
        rlab: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    """The classic lab VM has user ubuntu with password ubuntu. Scrubbing the password
    from command *output* (not only from what is shown) turned every /home/ubuntu and
    file owner into ***: wrong paths, and steps that never settle. Here the password is
    the login user's name, and a deploy and its rerun must behave as with any other."""
    state = fresh(rlab)
    lab.up(**RLAB_PARAMS, sudo_password=state.user)
    try:
        config = write_config(fresh(rlab), tmp_path, kubespray=True)
        env = {SUDO_PASSWORD_ENV: state.user}
        first = invoke("deploy", "--config", config, "--json", "--force", env=env)
        again = invoke("deploy", "--config", config, "--json", env=env)
    finally:
        lab.up(**RLAB_PARAMS)
    changed = [s["name"] for s in again.json().get("steps", []) if s["status"] != "ok"]
    figures.record("sudo password equal to the login user's name (as ubuntu/ubuntu)",
                   "deploy exits 0; its rerun changes nothing",
                   f"exit {first.code}, rerun exit {again.code}, rerun changed: "
                   f"{changed or 'nothing'}", first.code == 0 and again.code == 0
                   and not changed)
    assert first.code == 0, first.output[-2000:]
    assert again.code == 0, again.output[-2000:]
    assert not changed, f"the rerun changed {changed}: {again.stdout[-2000:]}"
