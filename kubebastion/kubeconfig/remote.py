"""Writing a kubeconfig on a remote host without ever losing or tearing it.

The merge happens here (PyYAML need not exist on the bastion); the remote side only
commits: under ``flock`` it checks that the file is still the one we merged into
(compare-and-swap on its checksum), keeps a timestamped backup, fsyncs the staged copy
and renames it over the target. A concurrent run that changed the file in between makes
us re-read and merge again, so two runs serialize and neither loses the other's entry.
A writer killed at any point leaves the old or the new complete file.
"""

from __future__ import annotations

import hashlib
import os
import secrets as _random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from kubebastion.atomic_file import BACKUP_MARK, backup_suffix
from kubebastion.errors import RemoteCommandError, StepError
from kubebastion.ssh.remote import quote, read_file, run
from kubebastion.ssh.shell import HostShell

MISSING = "missing"
CONFLICT_EXIT = 75
#: Test hook: seconds the committer sleeps before its rename (to kill it mid-write).
PAUSE_ENV = "KUBEBASTION_TEST_PAUSE_BEFORE_RENAME"
STAGE_PREFIX = ".config.kubebastion-stage-"
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


def commit_script(target: str, staged: str, expected_sha256: str, backup: str,
                  pause_seconds: float | None = None,
                  keep_backups: int = DEFAULT_KEEP_BACKUPS) -> str:
    """Under the lock: check, back up, fsync, rename, fsync the directory, then remove
    all but the ``keep_backups`` newest of our backups (named ``<target>.kubebastion-
    backup-<UTC stamp>``: they sort by time; nobody else's files match)."""
    directory = str(PurePosixPath(target).parent)
    ours = quote(f"{PurePosixPath(target).name}.{BACKUP_MARK}[0-9]*Z")
    t, s, d = quote(target), quote(staged), quote(directory)
    lines = [
        "set -e",
        "umask 077",
        f"exec 9>>{quote(directory + '/.config.kubebastion.lock')}",
        "flock -w 60 9",
        f"if [ -f {t} ]; then cur=$(sha256sum {t} | cut -d' ' -f1); else cur={MISSING}; fi",
        f'if [ "$cur" != {quote(expected_sha256)} ]; then rm -f {s}; exit {CONFLICT_EXIT}; fi',
        f"if [ -f {t} ]; then cp -p {t} {quote(backup)}; echo backup={quote(backup)}; fi",
        f"sync {s}",
    ]
    if pause_seconds:
        lines.append(f"sleep {pause_seconds:g}")
    lines += [
        f"mv -f {s} {t}",
        f"sync {d} 2>/dev/null || true",
        f"find {d} -maxdepth 1 -name '{STAGE_PREFIX}*' -mmin +10 -delete 2>/dev/null || true",
        f"find {d} -maxdepth 1 -type f -name {ours} -printf '%f\\n' | sort | "
        f"head -n -{int(keep_backups)} | while IFS= read -r f; do rm -f -- {d}/\"$f\"; done",
        "echo committed",
    ]
    return "\n".join(lines)


class _Conflict(Exception):
    """The file changed since we read it."""


def commit(shell: HostShell, current: RemoteText, new_text: str,
           keep_backups: int = DEFAULT_KEEP_BACKUPS) -> str | None:
    """Replace ``current.path`` with ``new_text`` if it still is ``current``; returns the
    backup path (None when there was no previous file)."""
    target = PurePosixPath(current.path)
    directory = str(target.parent)
    run(shell, f"mkdir -p {quote(directory)} && chmod 700 {quote(directory)}")
    staged = f"{directory}/{STAGE_PREFIX}{_random.token_hex(6)}"
    shell.put(new_text.encode(), staged)
    pause = os.environ.get(PAUSE_ENV)
    backup = f"{current.path}.{backup_suffix()}"
    script = commit_script(current.path, staged, current.sha256, backup,
                           float(pause) if pause else None, keep_backups)
    result = run(shell, script, check=False, display=f"commit {current.path}")
    if result.exit_code == CONFLICT_EXIT:
        raise _Conflict()
    if not result.ok:
        run(shell, f"rm -f {quote(staged)}", check=False)
        raise RemoteCommandError(shell.name, f"commit {current.path}", result.exit_code,
                                 result.stderr)
    return backup if "backup=" in result.stdout else None


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


