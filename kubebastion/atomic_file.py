"""Replace a user's file (the operator's ``~/.kube/config``) without ever losing it.

That file holds credentials for every cluster the operator uses, not only ours. A plain
``open(path, "w")`` interrupted by Ctrl-C, kill -9 or a full disk leaves it truncated; two
runs at once lose one run's entries; a temp file created with the default umask is
world-readable while it exists. So a write here:

1. takes an exclusive ``flock`` on a sibling lock file (two runs serialize; the kernel drops
   the lock when a process dies, so a killed run never leaves a stale lock behind);
2. does nothing at all when the content is already there (no backup, no new inode);
3. copies the previous file to a timestamped backup beside it, with its mode;
4. writes a temp file in the same directory, created ``O_EXCL`` with mode 0600, fsyncs it,
   renames it over the target (atomic on POSIX) and fsyncs the directory.

The lock file is ``<name>.kubebastion.lock``, not ``<name>.lock``: client-go (kubectl)
takes its own lock by creating ``config.lock`` with ``O_EXCL`` and deleting it afterwards, so
a ``config.lock`` we left behind would make every ``kubectl config`` command fail with
"file exists". Ours is never deleted: removing an flock file while another process waits on
it would let two holders in at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

LOCK_SUFFIX = ".kubebastion.lock"
#: A backup of ``<path>`` is ``<path>.kubebastion-backup-<UTC stamp>``, here and on hosts
#: (``kubebastion.ssh.remote`` names its backups with :func:`backup_suffix` too).
BACKUP_MARK = "kubebastion-backup-"
_TEMP_INFIX = ".kubebastion-tmp-"

_BACKUP_STAMP = re.compile(r"\d{8}T\d{6}Z(-\d+)?")

_held = threading.local()


def write_atomic(path: Path, data: bytes, mode: int = 0o600, backup: bool = True) -> Path | None:
    """Make ``path`` hold exactly ``data`` with ``mode``; return the backup made, if any.

    Identical content means no write and no backup (only the mode is corrected if it
    differs, since a world-readable credential file is worth fixing). ``path`` may be a
    symlink: the file it points to is replaced, and the link is kept, as kubectl does.
    Temp files left by a killed earlier run are removed first.
    """
    target = _resolve(path)
    with locked(target):
        cleanup_stale_temp_files(target)
        old = _read_if_exists(target)
        if old is not None and old[0] == data:
            if stat.S_IMODE(old[1].st_mode) != mode:
                os.chmod(target, mode)
            return None
        backup_path = None
        if backup and old is not None:
            backup_path = _free_backup_name(target)
            _replace_with(backup_path, old[0], stat.S_IMODE(old[1].st_mode), temp_for=target)
            os.utime(backup_path, ns=(old[1].st_atime_ns, old[1].st_mtime_ns))
        _replace_with(target, data, mode, temp_for=target)
        return backup_path


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Make ``path`` hold ``data`` in one rename (no lock, no backup, no comparison): for
    files that are ours alone, such as an upload to the machine kubebastion runs on."""
    _replace_with(path, data, mode, temp_for=path)


def prune_backups(path: Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` newest of our backups of ``path``: each holds the
    credentials the file held. Other files beside it (other tools' backups) stay."""
    target = _resolve(path)
    prefix = f"{target.name}.{BACKUP_MARK}"
    ours = [p for p in target.parent.iterdir() if p.name.startswith(prefix)
            and _BACKUP_STAMP.fullmatch(p.name[len(prefix):]) and p.is_file()
            and not p.is_symlink()]
    ours.sort(key=lambda p: _backup_order(p.name[len(prefix):]))
    removed = ours[:-keep] if keep > 0 else ours
    for old in removed:
        old.unlink(missing_ok=True)
    return removed


def _backup_order(stamp: str) -> tuple[str, int]:
    """``20261127T101500Z-10`` after ``-9``: the counter of writes in one second."""
    time_part, _, counter = stamp.partition("-")
    return time_part, int(counter or 0)


def touch_private(path: Path) -> None:
    """Create ``path`` readable by its owner only (0600), or make it so: logs that another
    writer then appends to or truncates (``open("w")`` keeps the mode) hold what a run
    printed, as the bastion's 0600 originals do."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the lock of ``path`` for a read-modify-write (read, merge, ``write_atomic``).

    Re-entrant within a thread, so ``write_atomic`` inside the block does not deadlock on
    its own lock; other threads and processes wait. ``flock`` locks belong to an open file
    description, so each acquisition opens the lock file anew: that is what makes two
    threads of one process exclude each other too.
    """
    target = _resolve(path)
    lock_path = str(target.with_name(target.name + LOCK_SUFFIX))
    held = _held_counts()
    if held.get(lock_path):
        held[lock_path] += 1
        try:
            yield
        finally:
            held[lock_path] -= 1
        return
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held[lock_path] = 1
        try:
            yield
        finally:
            del held[lock_path]
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _held_counts() -> dict[str, int]:
    """This thread's lock paths and how deeply each is held (for re-entrancy)."""
    counts: dict[str, int] | None = getattr(_held, "counts", None)
    if counts is None:
        counts = _held.counts = {}
    return counts


def cleanup_stale_temp_files(path: Path) -> list[Path]:
    """Remove temp files our writes to ``path`` left behind when killed; return them.

    Safe while other runs are active: it takes the lock, and a temp file only exists
    while its writer holds that lock.
    """
    target = _resolve(path)
    removed: list[Path] = []
    with locked(target):
        if not target.parent.is_dir():
            return removed
        prefix = f".{target.name}{_TEMP_INFIX}"
        for entry in target.parent.iterdir():
            if entry.name.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def backup_suffix(now: datetime | None = None) -> str:
    """``kubebastion-backup-20261127T101500Z``: sorts by time, and says who made it."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{BACKUP_MARK}{stamp}"


def backup_name(path: Path, now: datetime) -> Path:
    """``config.kubebastion-backup-20261127T101500Z``, beside ``path``."""
    return path.with_name(f"{path.name}.{backup_suffix(now)}")


def _free_backup_name(target: Path) -> Path:
    """A backup name not yet taken; two writes in one second get ``-1``, ``-2``..."""
    base = backup_name(target, datetime.now(UTC))
    candidate, counter = base, 0
    while candidate.exists():
        counter += 1
        candidate = base.with_name(f"{base.name}-{counter}")
    return candidate


def _replace_with(destination: Path, data: bytes, mode: int, temp_for: Path) -> None:
    """Temp file beside ``destination``, fsync, rename over it, fsync the directory.

    The temp file is named after ``temp_for`` (the file being written, also when the
    destination is its backup), so ``cleanup_stale_temp_files`` finds every leftover.
    """
    temp = temp_for.with_name(f".{temp_for.name}{_TEMP_INFIX}{os.getpid()}-{secrets.token_hex(4)}")
    # 0600 from the very first instant; the umask can only remove bits from it.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if mode != 0o600:
                os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_directory(destination.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; without it a crash can bring back the old name."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _read_if_exists(target: Path) -> tuple[bytes, os.stat_result] | None:
    try:
        with open(target, "rb") as handle:
            return handle.read(), os.fstat(handle.fileno())
    except FileNotFoundError:
        return None


def _resolve(path: Path) -> Path:
    """Follow symlinks (a dotfiles-managed ``~/.kube/config``) so we replace the real file.

    Only the path is resolved; a missing target is fine (first write).
    """
    return Path(os.path.realpath(os.path.expanduser(path)))
