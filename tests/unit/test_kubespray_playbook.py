"""The playbook's output parsers on captured ansible-core 2.18 output (some with kubespray
v2.31's profile_tasks callback), and the run script's
mechanics (live lines, exit code, lock, timeout, password file) with a stand-in
ansible-playbook run through a real local shell."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from pathlib import Path

import pytest

from kubebastion.kubespray.playbook import (
    LOCKED_CODE,
    HostRecap,
    PlaybookSummary,
    ProgressEvent,
    describe_failure,
    display_command,
    parse_playbook_output,
    parse_recap_line,
    playbook_environment,
    playbook_paths,
    playbook_script,
    progress_event,
    ssh_args,
    stop_command,
)
from kubebastion.ssh.shell import LocalShell
from kubebastion.ssh.stream import stream_command

CASES = Path(__file__).parent / "cases" / "kubespray"


def case(name: str) -> str:
    return (CASES / f"playbook_{name}.txt").read_text()


def test_successful_run_recap() -> None:
    summary = parse_playbook_output(case("ok"))
    assert summary.recap == {
        "k8s-m0": HostRecap(ok=1, changed=1, skipped=1),
        "k8s-w0": HostRecap(ok=1, changed=1, skipped=1),
    }
    assert summary.failures == [] and summary.failed_hosts == [] and summary.errors == []


def test_failed_task_names_host_task_and_message() -> None:
    summary = parse_playbook_output(case("fail"))
    assert summary.failed_hosts == ["k8s-m0", "k8s-w0"]
    decisive = {f.host: f for f in summary.decisive_failures()}
    assert decisive["k8s-w0"].task == "lab: injected failure"
    assert decisive["k8s-w0"].play == "Prepare the nodes"
    assert decisive["k8s-w0"].message == "injected failure for k8s-w0"
    # the ignored failure ("...ignoring") is not one; the loop item is
    assert decisive["k8s-m0"].task == "loop with a failing item"
    assert decisive["k8s-m0"].item == "b"
    assert decisive["k8s-m0"].message == "non-zero return code"
    assert all(f.task != "ignored command" for f in summary.failures)


def test_unreachable_host() -> None:
    summary = parse_playbook_output(case("unreach"))
    assert summary.failed_hosts == ["k8s-w1"]
    (failure,) = summary.decisive_failures()
    assert failure.unreachable and failure.host == "k8s-w1" and failure.task == "ping it"
    assert failure.message.startswith("Failed to connect to the host via ssh")


def test_unreachable_in_a_loop_reports_the_items_reason() -> None:
    summary = parse_playbook_output(case("loop_unreachable"))
    (failure,) = summary.decisive_failures()
    assert failure.host == "k8s-w1" and failure.unreachable
    assert failure.task == "lab_cluster : Lab | create directories"
    assert failure.message.startswith("Failed to connect to the host via ssh: Connection timed")


#: kubespray v2.31's ansible.cfg enables profile_tasks: a timing line after every play and
#: task banner's results, and after the recap a timing line, a rule and the slowest tasks.
_PROFILE_LINE = re.compile(r"^\w+day \d+ \w+ \d{4} .*\*+ ?$|^=+ ?$| -{2,} \d+\.\d+s$")


def test_profile_tasks_output_of_a_failed_validation() -> None:
    """Captured from ansible 11.13.0 with real kubespray v2.31.0's ansible.cfg and
    boilerplate.yml, run with kubebastion's environment, ``-e kube_version=1.32.0``."""
    text = case("profile_tasks_fail")
    summary = parse_playbook_output(text)
    assert summary.recap == {"node1": HostRecap(ok=7, failed=1, skipped=1),
                             "node2": HostRecap(ok=1, failed=1, skipped=1)}
    assert summary.errors == [] and len(summary.failures) == 2
    decisive = {f.host: f for f in summary.decisive_failures()}
    assert decisive["node1"].play == "Inventory setup and validation"
    assert decisive["node1"].task == (
        "validate_inventory : Stop if unsupported version of Kubernetes")
    assert decisive["node1"].message == (
        "The current release of Kubespray only support newer version of Kubernetes than "
        "1.33.0 - You are trying to apply 1.32.0")
    profile = [line for line in text.splitlines() if _PROFILE_LINE.search(line)]
    assert len(profile) >= 20  # the timing lines and the summary are there...
    assert all(progress_event(line) is None for line in profile)  # ...and never shown as events


def test_profile_tasks_output_of_a_whole_stand_in_run() -> None:
    """Captured from kubebastion's own log of ``invoke kubespray`` on the lab: the v2.31
    stand-in's cluster.yml with ansible 11.13.0 and the real ansible.cfg."""
    text = case("profile_tasks_ok")
    summary = parse_playbook_output(text)
    assert summary.recap == {
        "k8s-m0": HostRecap(ok=62, changed=12, skipped=33),
        "k8s-w0": HostRecap(ok=41, changed=7, skipped=21),
        "k8s-w1": HostRecap(ok=41, changed=7, skipped=21)}
    assert summary.failures == [] and summary.errors == [] and summary.failed_hosts == []
    events = [e for e in map(progress_event, text.splitlines()) if e is not None]
    assert [e.text for e in events if e.kind == "play"] == [
        "Check Ansible version", "Inventory setup and validation", "Install bastion ssh config",
        "Bootstrap hosts for Ansible", "Gather facts", "Prepare for etcd install",
        "Install the control plane", "Invoke kubeadm and install a CNI",
        "Install Kubernetes apps"]
    assert {e.kind for e in events} == {"play", "task", "recap"}
    assert sum(e.kind == "task" for e in events) == text.count("\nTASK [")


HOST_KEY_CHANGED = (
    "Data could not be sent to remote host \"198.18.1.101\". Make sure this host can be "
    "reached over ssh: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n"
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
    "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n"
    "Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r\n"
    "It is also possible that a host key has just been changed.\r\n"
    "The fingerprint for the ED25519 key sent by the remote host is\r\n"
    "SHA256:mx5nDrM1taz48kISibgcFjYB9/xetp2t5+rCNACKcn8.\r\n"
    "Please contact your system administrator.\r\n"
    "Add correct host key in /home/kbtlab/.ssh/kubebastion_known_hosts to get rid of this "
    "message.\r\nOffending ED25519 key in /home/kbtlab/.ssh/kubebastion_known_hosts:3\r\n"
    "Host key for 198.18.1.101 has changed and you have requested strict checking.\r\n"
    "Host key verification failed.\r\n")


def test_a_changed_host_key_is_said_in_one_line() -> None:
    line = ("fatal: [k8s-w1]: UNREACHABLE! => "
            + json.dumps({"changed": False, "msg": HOST_KEY_CHANGED, "unreachable": True}))
    (failure,) = parse_playbook_output(line + "\n").failures
    assert failure.unreachable
    assert failure.message == (
        "Host key verification failed: the host sent ED25519 key "
        "SHA256:mx5nDrM1taz48kISibgcFjYB9/xetp2t5+rCNACKcn8, which is not the one in the "
        "bastion's known_hosts (copied from the operator's verified keys)")


def test_fatal_error_without_recap() -> None:
    summary = parse_playbook_output(case("error"))
    assert summary.recap == {}
    assert summary.errors == ["the playbook: nonexist.yml could not be found"]


def test_describe_failure_mentions_hosts_tasks_and_log() -> None:
    text = describe_failure(parse_playbook_output(case("fail")), 2, "/home/u/x.log", 600)
    assert "ansible-playbook exited 2" in text
    assert "k8s-w0 failed at task [lab: injected failure]: injected failure for k8s-w0" in text
    assert "(item b)" in text
    assert text.endswith("log: /home/u/x.log")
    assert "timed out after 600 s" in describe_failure(PlaybookSummary(), 124, "l", 600)
    assert "timed out" in describe_failure(PlaybookSummary(), None, "l", 600)
    assert "another kubespray run" in describe_failure(PlaybookSummary(), LOCKED_CODE, "l", 1)


def test_recap_without_failure_line_is_still_reported() -> None:
    summary = PlaybookSummary(recap={"k8s-w0": HostRecap(failed=1)})
    assert "failed hosts without a failure line: k8s-w0" in describe_failure(summary, 2, "l", 1)


@pytest.mark.parametrize(("line", "event"), [
    ("PLAY [Install the control plane] ****************",
     ProgressEvent("play", "Install the control plane")),
    ("TASK [kubernetes/preinstall : Stop if [x] is empty] ***",
     ProgressEvent("task", "kubernetes/preinstall : Stop if [x] is empty")),
    ("RUNNING HANDLER [container-engine/containerd : Restart containerd] ***",
     ProgressEvent("handler", "container-engine/containerd : Restart containerd")),
    ("PLAY RECAP *********", ProgressEvent("recap", "PLAY RECAP")),
    ('fatal: [k8s-w0]: FAILED! => {"msg": "x"}', ProgressEvent("failure", "k8s-w0: FAILED")),
    ('fatal: [k8s-w1]: UNREACHABLE! => {}', ProgressEvent("failure", "k8s-w1: UNREACHABLE")),
    ("ERROR! the playbook: x could not be found",
     ProgressEvent("error", "the playbook: x could not be found")),
    ("ok: [k8s-m0]", None),
    ("Thursday 27 November 2026  03:55:01 +0000 (0:00:00.123)       0:00:01.234 ****", None),
], ids=["play", "task", "handler", "recap", "failed", "unreachable", "error", "ok", "profile"])
def test_progress_events(line: str, event: ProgressEvent | None) -> None:
    assert progress_event(line) == event


def test_recap_line_with_unknown_counter() -> None:
    assert parse_recap_line("h1 : ok=3 changed=1 unreachable=0 failed=0 new=4") == (
        "h1", HostRecap(ok=3, changed=1))
    assert parse_recap_line("not a recap line") is None


def test_environment_forces_host_key_checking_and_keeps_password_off_argv() -> None:
    env = playbook_environment(known_hosts="/home/u/.ssh/kh", private_key="/home/u/.ssh/k",
                               password_file="/home/u/logs/.become.x")
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert "-o StrictHostKeyChecking=yes" in env["ANSIBLE_SSH_ARGS"]
    assert "-o UserKnownHostsFile=/home/u/.ssh/kh" in env["ANSIBLE_SSH_ARGS"]
    assert env["ANSIBLE_BECOME_PASSWORD_FILE"] == "/home/u/logs/.become.x"
    assert "ANSIBLE_BECOME_PASSWORD_FILE" not in playbook_environment(
        known_hosts="k", private_key="p", password_file=None)
    assert "/dev/null" not in ssh_args("/x")
    assert display_command("lab", "/v", "/k") == (
        "cd /k && /v/bin/ansible-playbook -i inventory/lab/hosts.yaml cluster.yml -b")


# --- the run script, for real, with a stand-in ansible-playbook ---------------------------

FAKE_PLAYBOOK = """#!/bin/sh
echo "argv: $*"
echo "checking=$ANSIBLE_HOST_KEY_CHECKING"
if [ -n "${ANSIBLE_BECOME_PASSWORD_FILE:-}" ]; then
  echo "password-file-mode=$(stat -c %a "$ANSIBLE_BECOME_PASSWORD_FILE")"
fi
echo "PLAY [Prepare the nodes] ***"
echo "TASK [first] ***"
sleep "${FAKE_SLEEP:-0.3}"
echo "TASK [second] ***"
exit "${FAKE_EXIT:-0}"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    fake = venv_bin / "ansible-playbook"
    fake.write_text(FAKE_PLAYBOOK)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "kubespray").mkdir()
    return tmp_path


def script_for(root: Path, timeout: float = 30, password_file: str | None = None,
               extra_env: dict[str, str] | None = None) -> tuple[str, str]:
    paths = playbook_paths(str(root / "kubespray"), str(root / "venv"), str(root / "logs"),
                           "20260101T000000Z")
    env = playbook_environment(known_hosts="/kh", private_key="/k",
                               password_file=password_file)
    env.update(extra_env or {})
    return playbook_script(paths, "lab", env, timeout), paths.log


def test_script_streams_lines_live_and_keeps_the_log(checkout: Path) -> None:
    script, log = script_for(checkout, extra_env={"FAKE_SLEEP": "1"})
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    result = stream_command(LocalShell("bastion", 60), script,
                            lambda line: arrivals.append((time.monotonic() - start, line)), 60)
    assert result.exit_code == 0
    lines = [line for _, line in arrivals]
    assert lines[0] == "argv: -i inventory/lab/hosts.yaml cluster.yml -b"
    assert "checking=True" in lines
    first = next(t for t, line in arrivals if line == "TASK [first] ***")
    second = next(t for t, line in arrivals if line == "TASK [second] ***")
    assert second - first > 0.7  # the first task's line came before the sleep ended
    assert Path(log).read_text() == result.output
    assert not (checkout / "logs" / "kubespray.pid").exists()


def test_script_passes_the_exit_code_and_removes_the_password_file(checkout: Path) -> None:
    secret = checkout / "logs" / ".become.test"
    secret.parent.mkdir()
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"hunter2")
    os.close(fd)
    script, _ = script_for(checkout, password_file=str(secret), extra_env={"FAKE_EXIT": "2"})
    assert "hunter2" not in script
    result = stream_command(LocalShell("bastion", 60), script, lambda _: None, 60)
    assert result.exit_code == 2
    assert "password-file-mode=600" in result.output
    assert not secret.exists()


def test_script_timeout_stops_the_playbook(checkout: Path) -> None:
    script, _ = script_for(checkout, timeout=1, extra_env={"FAKE_SLEEP": "20"})
    started = time.monotonic()
    result = stream_command(LocalShell("bastion", 60), script, lambda _: None, 60)
    assert result.exit_code == 124
    assert time.monotonic() - started < 10


def test_a_second_run_is_refused_while_one_holds_the_lock(checkout: Path) -> None:
    script, _ = script_for(checkout, extra_env={"FAKE_SLEEP": "3"})
    shell = LocalShell("bastion", 60)
    first: list[int | None] = []
    thread = threading.Thread(
        target=lambda: first.append(stream_command(shell, script, lambda _: None, 60).exit_code))
    thread.start()
    time.sleep(1)
    second = stream_command(shell, script, lambda _: None, 60)
    thread.join()
    assert second.exit_code == LOCKED_CODE
    assert "another kubespray run holds" in second.output
    assert first == [0]


def test_stop_command_ends_a_running_playbook_by_its_pid(checkout: Path) -> None:
    script, _ = script_for(checkout, extra_env={"FAKE_SLEEP": "30"})
    shell = LocalShell("bastion", 60)
    codes: list[int | None] = []
    thread = threading.Thread(
        target=lambda: codes.append(stream_command(shell, script, lambda _: None, 60).exit_code))
    started = time.monotonic()
    thread.start()
    pid_file = checkout / "logs" / "kubespray.pid"
    while not pid_file.exists() and time.monotonic() - started < 10:
        time.sleep(0.05)
    shell.run(stop_command(str(pid_file)))
    thread.join(20)
    assert codes and codes[0] not in (0, None)
    assert time.monotonic() - started < 15


def test_stream_deadline_returns_none(checkout: Path) -> None:
    result = stream_command(LocalShell("bastion", 60), "echo start; sleep 20", lambda _: None,
                            timeout=1)
    assert result.exit_code is None and result.output == "start\n"


def test_two_runs_started_in_the_same_second_get_different_log_names() -> None:
    from kubebastion.kubespray.playbook import run_stamp

    first, second = run_stamp(1_764_433_880.0), run_stamp(1_764_433_880.0)
    assert first != second
    assert first.startswith("20251129T163120Z-") and second.startswith("20251129T163120Z-")
