"""write_atomic / locked: no partial file, no world-readable instant, no lost update."""

from __future__ import annotations

import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

import kubebastion.atomic_file as atomic_file
from kubebastion.atomic_file import (
    backup_name,
    backup_suffix,
    cleanup_stale_temp_files,
    locked,
    write_atomic,
)

MODULE_FILE = Path(atomic_file.__file__)
BACKUP_RE = re.compile(r"^config\.kubebastion-backup-\d{8}T\d{6}Z(-\d+)?$")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def backups(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".kubebastion-backup-" in p.name)


def temp_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".kubebastion-tmp-" in p.name)


# Run in a child interpreter: loads atomic_file.py by path (stdlib only, so -I -S works and
# starts fast, whatever the package __init__ imports), then alternates two payloads forever.
CHILD = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("atomic_file", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
target, backup = Path(sys.argv[2]), sys.argv[3] == "1"
old = bytes.fromhex(sys.argv[4]) * int(sys.argv[5])
payloads = [old, bytes.fromhex(sys.argv[6]) * int(sys.argv[7])]
print("ready", flush=True)
i = 1
while True:
    module.write_atomic(target, payloads[i % 2], backup=backup)
    i += 1
"""

# Two payloads of different sizes: a truncated or interleaved file matches neither.
OLD_UNIT, OLD_COUNT = b"old-kubeconfig\n", 70_000  # ~1 MiB
NEW_UNIT, NEW_COUNT = b"NEW-KUBECONFIG-v2\n", 90_000  # ~1.5 MiB
OLD, NEW = OLD_UNIT * OLD_COUNT, NEW_UNIT * NEW_COUNT


def python_child(script: str, *args: object) -> list[str]:
    """argv running ``script`` with the module file and ``args`` as ``sys.argv[1:]``."""
    return [sys.executable, "-I", "-S", "-c", script, str(MODULE_FILE), *map(str, args)]


def child_command(target: Path, backup: bool) -> list[str]:
    flag = "1" if backup else "0"
    return python_child(CHILD, target, flag, OLD_UNIT.hex(), OLD_COUNT, NEW_UNIT.hex(), NEW_COUNT)


# --- writing ---------------------------------------------------------------------------------


def test_first_write_creates_0600_without_backup(tmp_path: Path) -> None:
    target = tmp_path / "config"
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        assert write_atomic(target, b"first") is None
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"first"
    assert mode_of(target) == 0o600
    assert backups(tmp_path) == [] and temp_files(tmp_path) == []


def test_identical_content_is_not_written_nor_backed_up(tmp_path: Path) -> None:
    target = tmp_path / "config"
    write_atomic(target, b"same")
    before = target.stat()
    time.sleep(0.01)
    assert write_atomic(target, b"same") is None
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert backups(tmp_path) == []


def test_identical_content_with_a_looser_mode_only_gets_chmod(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_bytes(b"same")
    target.chmod(0o644)
    inode = target.stat().st_ino
    assert write_atomic(target, b"same") is None
    assert mode_of(target) == 0o600
    assert target.stat().st_ino == inode
    assert backups(tmp_path) == []


def test_change_backs_up_the_old_content_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_bytes(b"old content")
    target.chmod(0o640)
    os.utime(target, (1_700_000_000, 1_700_000_000))
    backup = write_atomic(target, b"new content")
    assert backup is not None
    assert backup.parent == tmp_path
    assert BACKUP_RE.match(backup.name)
    assert backup.read_bytes() == b"old content"
    assert mode_of(backup) == 0o640
    assert backup.stat().st_mtime == 1_700_000_000
    assert target.read_bytes() == b"new content"
    assert mode_of(target) == 0o600
    assert backups(tmp_path) == [backup]
    assert temp_files(tmp_path) == []


def test_two_changes_in_one_second_keep_both_backups(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_bytes(b"v1")
    made = [write_atomic(target, b"v2"), write_atomic(target, b"v3"), write_atomic(target, b"v4")]
    assert len({p for p in made if p is not None}) == 3
    assert sorted(p.read_bytes() for p in made if p is not None) == [b"v1", b"v2", b"v3"]


def test_backup_false_makes_none(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_bytes(b"old")
    assert write_atomic(target, b"new", backup=False) is None
    assert backups(tmp_path) == []


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400], ids=["0600", "0640", "0400"])
def test_requested_mode(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "config"
    write_atomic(target, b"data", mode=mode)
    assert mode_of(target) == mode


def test_backup_name_is_utc_and_sortable() -> None:
    when = datetime(2026, 11, 27, 10, 15, 0, tzinfo=UTC)
    assert backup_name(Path("/home/ops/.kube/config"), when) == Path(
        "/home/ops/.kube/config.kubebastion-backup-20261127T101500Z"
    )
    assert backup_suffix(when) == "kubebastion-backup-20261127T101500Z"  # hosts' too


def test_replace_file_renames_into_place_and_leaves_nothing(tmp_path: Path) -> None:
    """The local shell's upload: the old inode replaced whole, 0600, no temp file left."""
    from kubebastion.ssh.shell import LocalShell

    target = tmp_path / "upload"
    target.write_bytes(b"old")
    old_inode = target.stat().st_ino
    LocalShell("local", 10).put(b"new", str(target))
    assert target.read_bytes() == b"new" and mode_of(target) == 0o600
    assert target.stat().st_ino != old_inode
    assert os.listdir(tmp_path) == ["upload"]


def test_symlinked_config_replaces_the_real_file_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "kubeconfig"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "kube" / "config"
    link.parent.mkdir()
    link.symlink_to(real)
    backup = write_atomic(link, b"new")
    assert link.is_symlink() and link.read_bytes() == b"new"
    assert backup is not None and backup.parent == real.parent
    assert backup.read_bytes() == b"old"


def test_missing_directory_is_created_private(tmp_path: Path) -> None:
    target = tmp_path / "home" / ".kube" / "config"
    write_atomic(target, b"data")
    assert target.read_bytes() == b"data"
    assert mode_of(target.parent) == 0o700


def test_failed_replace_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "config"
    target.write_bytes(b"old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new", backup=False)
    assert target.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_lock_file_is_not_kubectl_s(tmp_path: Path) -> None:
    """client-go creates ``config.lock`` O_EXCL and deletes it; one left by us breaks kubectl."""
    target = tmp_path / "config"
    write_atomic(target, b"data")
    assert not (tmp_path / "config.lock").exists()
    assert (tmp_path / "config.kubebastion.lock").exists()
    assert mode_of(tmp_path / "config.kubebastion.lock") == 0o600


# --- stale temp files ------------------------------------------------------------------------


def test_cleanup_removes_only_our_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "config"
    ours = [tmp_path / ".config.kubebastion-tmp-123-abcd", tmp_path / ".config.kubebastion-tmp-9"]
    others = [
        tmp_path / ".config.swp",
        tmp_path / "config.kubebastion-backup-20261127T101500Z",
        tmp_path / ".other.kubebastion-tmp-1-ab",
        tmp_path / "config",
    ]
    for path in ours + others:
        path.write_bytes(b"x")
    assert sorted(cleanup_stale_temp_files(target)) == sorted(ours)
    assert all(p.exists() for p in others)
    assert cleanup_stale_temp_files(target) == []


def test_cleanup_of_a_missing_directory_is_a_no_op(tmp_path: Path) -> None:
    assert cleanup_stale_temp_files(tmp_path / "nowhere" / "config") == []


def test_write_removes_leftovers_of_a_killed_run(tmp_path: Path) -> None:
    target = tmp_path / "config"
    leftover = tmp_path / ".config.kubebastion-tmp-4242-deadbeef"
    leftover.write_bytes(b"partial")
    write_atomic(target, b"data")
    assert not leftover.exists()


# --- kill -9 -----------------------------------------------------------------------------------


def _kill_trial(directory: Path, seed: int) -> tuple[bool, list[Path]]:
    """One trial: start a writer, SIGKILL it at a random moment, check what is left.

    Returns whether any write completed (target is NEW) and the temp files left behind.
    """
    rng = random.Random(seed)
    directory.mkdir()
    target = directory / "config"
    write_atomic(target, OLD, backup=False)
    with subprocess.Popen(
        child_command(target, backup=seed % 2 == 0), stdout=subprocess.PIPE
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0, 0.03))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    content = target.read_bytes()
    assert content in (OLD, NEW), f"seed {seed}: partial target ({len(content)} bytes)"
    for backup in backups(directory):
        assert backup.read_bytes() in (OLD, NEW), f"seed {seed}: partial backup {backup.name}"
    leftovers = temp_files(directory)
    for temp in leftovers:
        assert mode_of(temp) & 0o077 == 0, f"seed {seed}: {temp.name} readable by others"
    # The kernel dropped the dead writer's lock: the next write neither waits nor fails.
    started = time.monotonic()
    assert sorted(cleanup_stale_temp_files(target)) == leftovers
    write_atomic(target, b"after", backup=False)
    assert time.monotonic() - started < 5
    assert temp_files(directory) == []
    for path in directory.iterdir():
        path.unlink()
    return content == NEW, leftovers


def test_kill_9_never_leaves_a_partial_or_readable_file(tmp_path: Path) -> None:
    trials = 100
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: _kill_trial(tmp_path / f"t{i}", i), range(trials)))
    # Not vacuous: kills landed after completed writes and in the middle of writes.
    assert sum(new for new, _ in results) > 0
    assert sum(1 for _, leftovers in results if leftovers) > 0


# --- locking -----------------------------------------------------------------------------------


def test_locked_blocks_other_threads_until_released(tmp_path: Path) -> None:
    target = tmp_path / "config"
    write_atomic(target, b"before")
    done = threading.Event()

    def writer() -> None:
        write_atomic(target, b"from thread", backup=False)
        done.set()

    with locked(target):
        thread = threading.Thread(target=writer)
        thread.start()
        assert not done.wait(0.3)
        assert target.read_bytes() == b"before"
    thread.join(5)
    assert done.is_set() and target.read_bytes() == b"from thread"


def test_locked_blocks_another_process(tmp_path: Path) -> None:
    target = tmp_path / "config"
    write_atomic(target, b"before")
    script = (
        "import importlib.util, sys, pathlib\n"
        "spec = importlib.util.spec_from_file_location('a', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "m.write_atomic(pathlib.Path(sys.argv[2]), b'from process', backup=False)\n"
    )
    with locked(target):
        child = subprocess.Popen(python_child(script, target))
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(0.5)
        assert target.read_bytes() == b"before"
    assert child.wait(10) == 0
    assert target.read_bytes() == b"from process"


def test_locked_is_reentrant_for_read_modify_write(tmp_path: Path) -> None:
    target = tmp_path / "config"
    write_atomic(target, b"1")
    finished = threading.Event()

    def read_modify_write() -> None:
        with locked(target), locked(target):
            value = int(target.read_bytes())
            write_atomic(target, str(value + 1).encode())
            cleanup_stale_temp_files(target)
        finished.set()

    thread = threading.Thread(target=read_modify_write, daemon=True)
    thread.start()
    assert finished.wait(5), "write_atomic inside locked() deadlocked"
    assert target.read_bytes() == b"2"


INCREMENT = """
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("atomic_file", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
target = Path(sys.argv[2])
for _ in range(int(sys.argv[3])):
    with m.locked(target):
        value = int(target.read_bytes())
        time.sleep(0.001)  # widen the read-modify-write window
        m.write_atomic(target, str(value + 1).encode(), backup=False)
"""


def test_concurrent_processes_and_threads_lose_no_update(tmp_path: Path) -> None:
    target = tmp_path / "config"
    write_atomic(target, b"0")
    per_writer = 25
    processes = [subprocess.Popen(python_child(INCREMENT, target, per_writer)) for _ in range(2)]

    def increment() -> None:
        for _ in range(per_writer):
            with locked(target):
                value = int(target.read_bytes())
                time.sleep(0.001)
                write_atomic(target, str(value + 1).encode(), backup=False)

    threads = [threading.Thread(target=increment) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [p.wait(30) for p in processes] == [0, 0]
    assert int(target.read_bytes()) == 4 * per_writer
    assert temp_files(tmp_path) == []
