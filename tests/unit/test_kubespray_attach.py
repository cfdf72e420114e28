"""Finding and following a playbook a lost run left running: the parsers, and the attach
script for real against a local process (the lab test: tests/reliability/test_interrupts.py)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from kubebastion.kubespray.attach import (
    NO_STATUS,
    RunningPlaybook,
    attach_script,
    describe_other,
    holder_log,
    parse_running,
    running_command,
)
from kubebastion.kubespray.playbook import playbook_paths
from kubebastion.ssh.shell import LocalShell
from kubebastion.ssh.stream import stream_command

RUN_FILE = ("running=yes\npid=42\nlog=/h/logs/kubespray-x.log\nexit=/h/logs/kubespray-x.exit\n"
            "cluster=lab\nstarted=2026-11-29T16:52:04Z\n")


def test_parse_running() -> None:
    assert parse_running("running=no\n") is None
    found = parse_running(RUN_FILE)
    assert found == RunningPlaybook(42, "/h/logs/kubespray-x.log", "/h/logs/kubespray-x.exit",
                                    "lab", "2026-11-29T16:52:04Z")
    assert found.known
    foreign = parse_running("running=yes\n")
    assert foreign is not None and not foreign.known
    assert "wrote no run details" in describe_other(foreign, "/h/logs/kubespray.lock", "lab")
    assert "'other'" in describe_other(
        RunningPlaybook(1, "/l", "/e", "other", "t"), "/h/lock", "lab")


def test_the_lock_message_names_the_holders_log() -> None:
    line = ("kubebastion: another kubespray run holds /h/logs/kubespray.lock "
            "(log: /h/logs/kubespray-x.log)")
    assert holder_log(line) == "/h/logs/kubespray-x.log"
    assert holder_log("nothing") == ""


def test_running_command_sees_a_held_lock_and_the_run_file(tmp_path: Path) -> None:
    paths = playbook_paths(str(tmp_path), str(tmp_path), str(tmp_path), "x")
    shell = LocalShell("bastion", 30)
    assert parse_running(shell.run(running_command(paths)).stdout) is None
    Path(paths.run_file).write_text(RUN_FILE.split("\n", 1)[1])
    holder = subprocess.Popen(["flock", paths.lock_file, "sleep", "30"])
    try:
        for _ in range(50):
            found = parse_running(shell.run(running_command(paths)).stdout)
            if found:
                break
        assert found is not None and found.pid == 42 and found.cluster == "lab"
    finally:
        holder.kill()
        holder.wait()


def test_attach_follows_until_the_process_ends_and_exits_with_its_status(
        tmp_path: Path) -> None:
    log, status = tmp_path / "run.log", tmp_path / "run.exit"
    log.write_text("PLAY [old] ***\n")
    writer = subprocess.Popen(["sh", "-c", f"sleep 1; echo 'TASK [new] ***' >> {log}; "
                               f"sleep 0.5; echo 3 > {status}"])
    reaper = threading.Thread(target=writer.wait)  # a zombie would look alive to tail
    reaper.start()
    running = RunningPlaybook(writer.pid, str(log), str(status), "lab", "now")
    lines: list[str] = []
    result = stream_command(LocalShell("bastion", 30), attach_script(running), lines.append, 30)
    reaper.join()
    assert result.exit_code == 3
    assert lines == ["TASK [new] ***"]  # from where the log was, not from its start


def test_attach_without_a_status_file_says_so(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("")
    gone = subprocess.Popen(["true"])
    gone.wait()
    running = RunningPlaybook(gone.pid, str(log), str(tmp_path / "none.exit"), "lab", "now")
    result = stream_command(LocalShell("bastion", 30), attach_script(running), lambda _: None,
                            30)
    assert result.exit_code == NO_STATUS


def test_a_lock_held_without_a_run_file_is_seen_as_running_but_unknown(tmp_path: Path) -> None:
    paths = playbook_paths(str(tmp_path), str(tmp_path), str(tmp_path), "x")
    shell = LocalShell("bastion", 30)
    holder = subprocess.Popen(["flock", paths.lock_file, "sleep", "30"])
    try:
        for _ in range(50):
            result = shell.run(running_command(paths))
            found = parse_running(result.stdout)
            if found:
                break
        assert result.ok and found is not None and not found.known
    finally:
        holder.kill()
        holder.wait()
