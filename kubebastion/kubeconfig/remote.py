"""Writing a kubeconfig on a remote host without ever losing or tearing it.

The merge happens here (PyYAML need not exist on the bastion); the remote side only
commits, with ``ssh.remote.write_files``' one install script: under ``flock`` it checks
that the file is still the one we merged into (compare-and-swap on its checksum), keeps a
timestamped backup, fsyncs the staged copy and renames it over the target. A concurrent
run that changed the file in between makes us re-read and merge again, so two runs
serialize and neither loses the other's entry.
A writer killed at any point leaves the old or the new complete file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from kubebastion.atomic_file import BACKUP_MARK
from kubebastion.errors import RemoteCommandError, StepError
from kubebastion.ssh.remote import (
    CONFLICT_EXIT,
    MISSING,
    FileWrite,
    quote,
    read_file,
    run,
    write_files,
)
from kubebastion.ssh.shell import HostShell

#: Test hook: seconds the committer sleeps before its rename (to kill it mid-write).
PAUSE_ENV = "KUBEBASTION_TEST_PAUSE_BEFORE_RENAME"
#: How many of our backups of a kubeconfig are kept (each holds admin credentials).
DEFAULT_KEEP_BACKUPS = 5


#: (current text, its path) -> the text we want there.
MergeFunction = Callable[[str, str], str]


@dataclass(frozen=True)
class RemoteText:
    path: str
    text: str
    sha256: str  # MISSING when the file does not exist


def kubeconfig_path(shell: HostShell) -> str:
    """The login user's ``~/.kube/config`` as an absolute path."""
    home = run(shell, 'printf %s "$HOME"').stdout.strip()
    if not home.startswith("/"):
        raise StepError(f"{shell.name}: cannot tell the login user's home ({home!r})")
    return f"{home}/.kube/config"


def read_text(shell: HostShell, path: str) -> RemoteText:
    data = read_file(shell, path)
    if data is None:
        return RemoteText(path, "", MISSING)
    return RemoteText(path, data.decode(), hashlib.sha256(data).hexdigest())


def lock_path(target: str) -> str:
    """The committers' flock file beside the kubeconfig (never removed: see atomic_file)."""
    return f"{PurePosixPath(target).parent}/.config.kubebastion.lock"


def kubeconfig_write(current: RemoteText, new_text: str) -> FileWrite:
    """The commit of ``new_text`` over ``current``: 0600 in a 0700 folder, the old file
    backed up, and only if the file still is the one that was read (compare-and-swap)."""
    return FileWrite(current.path, new_text.encode(), 0o600, backup=True, folder_mode=0o700,
                     expected_sha256=current.sha256)


def prune_command(target: str, keep_backups: int = DEFAULT_KEEP_BACKUPS) -> str:
    """Remove all but the ``keep_backups`` newest of our backups of ``target`` (named
    ``<target>.kubebastion-backup-<UTC stamp>``: they sort by time; nobody else's files
    match)."""
    directory = quote(str(PurePosixPath(target).parent))
    ours = quote(f"{PurePosixPath(target).name}.{BACKUP_MARK}[0-9]*Z")
    return (f"find {directory} -maxdepth 1 -type f -name {ours} -printf '%f\\n' | sort | "
            f"head -n -{int(keep_backups)} | while IFS= read -r f; do "
            f"rm -f -- {directory}/\"$f\"; done")


class _Conflict(Exception):
    """The file changed since we read it."""


def commit(shell: HostShell, current: RemoteText, new_text: str,
           keep_backups: int = DEFAULT_KEEP_BACKUPS) -> str | None:
    """Replace ``current.path`` with ``new_text`` if it still is ``current`` (under the
    lock, with ``write_files``' one install script), then prune our old backups; returns
    the backup path (None when there was no previous file)."""
    pause = os.environ.get(PAUSE_ENV)
    try:
        backups = write_files(shell, [kubeconfig_write(current, new_text)],
                              then=prune_command(current.path, keep_backups),
                              display=f"commit {current.path}", lock=lock_path(current.path),
                              pause=float(pause) if pause else None)
    except RemoteCommandError as exc:
        if exc.exit_code == CONFLICT_EXIT:
            raise _Conflict() from None
        raise
    return backups[0] if backups else None


def write_merged(shell: HostShell, path: str, merge: MergeFunction, *, dry_run: bool,
                 attempts: int = 5, keep_backups: int = DEFAULT_KEEP_BACKUPS
                 ) -> tuple[bool, str, str, str | None]:
    """Read, merge, commit; retried when another run changed the file meanwhile.

    Returns (changed, old text, new text, backup path).
    """
    for _ in range(attempts):
        current = read_text(shell, path)
        new_text = merge(current.text, current.path)
        if new_text == current.text:
            return False, current.text, new_text, None
        if dry_run:
            return True, current.text, new_text, None
        try:
            backup = commit(shell, current, new_text, keep_backups)
        except _Conflict:
            continue
        return True, current.text, new_text, backup
    raise StepError(f"{shell.name}: {path} kept changing under us ({attempts} attempts): "
                    "is another tool rewriting it in a loop?")


