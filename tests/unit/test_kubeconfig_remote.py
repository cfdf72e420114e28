"""The bastion-side committer of the kubeconfig (``write_files``' install script with the
kubeconfig's lock, compare-and-swap and backup pruning), run here with plain sh: compare,
back up, replace atomically, keep the newest backups of ours only."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

from kubebastion.kubeconfig.remote import (
    RemoteText,
    kubeconfig_write,
    lock_path,
    prune_command,
)
from kubebastion.ssh.remote import CONFLICT_EXIT, MISSING, install_files_command


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def commit_script(target: Path, text: str, expected: str, suffix: str = "bak",
                  pause: float | None = None, keep_backups: int = 5) -> str:
    """What ``kubeconfig.remote.commit`` runs on the bastion, its upload put in place."""
    bundle = target.parent / "upload"
    bundle.write_text(text)
    current = RemoteText(str(target), "", expected)
    return (install_files_command(str(bundle), [kubeconfig_write(current, text)], suffix,
                                  lock=lock_path(str(target)), pause=pause)
            + "\n" + prune_command(str(target), keep_backups))


def run_commit(target: Path, text: str, expected: str, pause: float | None = None
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", commit_script(target, text, expected,
                                                          pause=pause)],
                          capture_output=True, text=True, check=False)


def test_commit_replaces_backs_up_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("old")
    target.chmod(0o600)
    result = run_commit(target, "new", sha("old"))
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "new" and Path(f"{target}.bak").read_text() == "old"
    assert "backup=0" in result.stdout
    assert target.stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o777 == 0o700


def test_commit_refuses_when_the_file_changed_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("someone else's edit")
    result = run_commit(target, "ours", sha("what we read"))
    assert result.returncode == CONFLICT_EXIT
    assert target.read_text() == "someone else's edit"
    assert not list(tmp_path.glob(".config.kubebastion-[!.]*"))  # nothing staged
    assert not list(tmp_path.glob("config.*"))  # no backup either


def test_commit_creates_a_missing_file(tmp_path: Path) -> None:
    target = tmp_path / "config"
    result = run_commit(target, "first", MISSING)
    assert result.returncode == 0 and target.read_text() == "first"
    assert "backup=" not in result.stdout


def test_kill_during_commit_leaves_the_old_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("old complete")
    script = commit_script(target, "new complete", sha("old complete"), pause=30)
    proc = subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while not Path(f"{target}.bak").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "old complete"
    assert run_commit(target, "new complete", sha("old complete")).returncode == 0
    assert target.read_text() == "new complete"


OTHERS = ("config.bak", "config.kubebastion-backup-notes.txt", "config.backup-20200101",
          "other.kubebastion-backup-20200101T000000Z")


def test_the_bastion_commit_keeps_the_newest_backups_of_ours_only(tmp_path: Path) -> None:
    """Each changing run leaves a backup holding admin credentials: the newest N stay."""
    target = tmp_path / "config"
    target.write_text("v0")
    for name in OTHERS:
        (tmp_path / name).write_text("not ours")
    for n in range(1, 8):
        script = commit_script(target, f"v{n}", sha(f"v{n - 1}"),
                               f"kubebastion-backup-2026112{n}T000000Z", keep_backups=3)
        done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".config.kubebastion.lock")
    assert left == sorted(["config", *OTHERS, *(f"config.kubebastion-backup-2026112{n}T000000Z"
                                                for n in (5, 6, 7))])
    assert (tmp_path / "config.kubebastion-backup-20261127T000000Z").read_text() == "v6"
