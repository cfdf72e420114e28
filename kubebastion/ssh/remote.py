"""Running commands and writing files on a host, safely.

Command strings are built by the pure ``*_command`` functions (every value quoted with
``shlex.quote``) and executed through a ``HostShell``. sudo gets its password on stdin
only (never on the command line) and the command itself runs with stdin from /dev/null,
so the password can never flow into it when sudo did not need it.
"""

from __future__ import annotations

import hashlib
import re
import secrets as _random
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from kubebastion.atomic_file import backup_suffix
from kubebastion.errors import RemoteCommandError, SSHError, SudoError
from kubebastion.secrets import redact, sudo_password
from kubebastion.ssh.shell import CommandResult, HostShell, Stdin

quote = shlex.quote


def sudo_command(command: str, with_password: bool) -> str:
    """Wrap ``command`` for sudo. ``-k`` makes the password prompt deterministic."""
    inner = quote(f"exec </dev/null\n{command}")
    if with_password:
        return f"sudo -S -k -p '' -- /bin/sh -c {inner}"
    return f"sudo -n -- /bin/sh -c {inner}"


#: (phrases in an error output, what it means for the operator).
Explanations = Sequence[tuple[tuple[str, ...], str]]

_SUDO_FAILURES: Explanations = (
    (("incorrect password", "sorry, try again"),
     "sudo rejected the password (check KUBEBASTION_SUDO_PASSWORD)"),
    (("a password is required", "no password was provided"),
     "sudo needs a password: set KUBEBASTION_SUDO_PASSWORD (or pass --ask-sudo-password)"),
    (("is not in the sudoers file", "is not allowed to execute"),
     "the login user may not use sudo on this host"),
)


def explain(output: str, explanations: Explanations) -> str | None:
    """The explanation of the first entry one of whose phrases ``output`` holds (any case),
    else None: the known ways a command fails, told in the operator's terms."""
    text = output.lower()
    return next((meaning for phrases, meaning in explanations
                 if any(phrase in text for phrase in phrases)), None)


def classify_sudo_failure(stderr: str) -> str | None:
    """A human explanation when ``stderr`` is sudo refusing, else None."""
    return explain(stderr, _SUDO_FAILURES)


def run(shell: HostShell, command: str, *, sudo: bool = False, check: bool = True,
        timeout: float | None = None, display: str | None = None,
        data: Stdin = None) -> CommandResult:
    """Run ``command``; with ``check``, a failure raises naming host and command.

    ``display`` is how the command is named in errors (e.g. without long data). ``data``:
    the command's input, streamed over its channel (not with ``sudo``, whose stdin
    carries the password).
    """
    if sudo and data is not None:
        raise ValueError("a command run with sudo takes no input of its own")
    stdin: Stdin = data
    if sudo:
        password = sudo_password()
        command = sudo_command(command, password is not None)
        if password is not None:
            stdin = password.reveal() + "\n"
    # The output is returned as it is: the password only ever reaches sudo's stdin (the
    # command's own stdin is /dev/null), and scrubbing data would corrupt it whenever
    # the password also occurs in it (a password "ubuntu" and every /home/ubuntu path).
    # Whatever is shown (errors, tables, JSON, logs) is scrubbed where it is shown.
    result = shell.run(command, stdin=stdin, timeout=timeout)
    if sudo and not result.ok:
        reason = classify_sudo_failure(result.stderr)
        if reason is not None:
            raise SudoError(f"{shell.name}: {reason}")
    if check and not result.ok:
        raise RemoteCommandError(shell.name, redact(display or _short(command)),
                                 result.exit_code, redact(result.stderr))
    return result


def _short(command: str, limit: int = 200) -> str:
    command = " ".join(command.split())
    return command if len(command) <= limit else command[: limit - 3] + "..."


def parse_key_values(stdout: str) -> dict[str, str]:
    """The ``key=value`` lines our state and fact commands print, both sides stripped. A
    line without ``=`` is not one of ours and is skipped; a repeated key keeps its last
    value."""
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class FileState:
    """A remote file's checksum, mode and owner; ``exists`` False when absent."""

    exists: bool
    sha256: str = ""
    mode: int = 0
    owner: str = ""
    group: str = ""


def file_state_command(path: str) -> str:
    p = quote(path)
    return (f"if [ -f {p} ]; then sha256sum {p} | cut -d' ' -f1; stat -c '%a %U %G' {p}; "
            "else echo missing; fi")


def parse_file_state(stdout: str) -> FileState:
    lines = stdout.split()
    if not lines or lines[0] == "missing":
        return FileState(exists=False)
    if len(lines) != 4:
        raise ValueError(f"unexpected file state output: {stdout!r}")
    return FileState(True, lines[0], int(lines[1], 8), lines[2], lines[3])


def file_state(shell: HostShell, path: str, *, sudo: bool = False) -> FileState:
    return parse_file_state(run(shell, file_state_command(path), sudo=sudo).stdout)


def read_file(shell: HostShell, path: str, *, sudo: bool = False) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    p = quote(path)
    result = run(shell, f"if [ -f {p} ]; then base64 -w0 {p}; else exit 3; fi",
                 sudo=sudo, check=False)
    if result.exit_code == 3:
        return None
    if not result.ok:
        raise RemoteCommandError(shell.name, f"read {path}", result.exit_code, result.stderr)
    import base64

    return base64.b64decode(result.stdout)


UPLOAD_NAME = ".kubebastion-upload."  # in /tmp: the login user may write nowhere else
#: An upload whose connection died leaves its temp file behind (nothing can remove it
#: then). The next install on that host removes the login user's own leftovers once they
#: are an hour old: an upload in progress keeps touching its file, and a stalled one
#: fails at the command deadline long before. (Under sudo, ``$SUDO_UID`` is the login
#: user.)
SWEEP_STALE_UPLOADS = (f"find /tmp -maxdepth 1 -type f -name '{UPLOAD_NAME}*' "
                       '-user "${SUDO_UID:-$(id -u)}" -mmin +60 -delete 2>/dev/null || true')


def upload(shell: HostShell, data: bytes) -> str:
    """Put ``data`` in a new 0600 file in /tmp on the host; returns its path. The name is
    made here (no ``mktemp`` round trip) and created exclusively, so nothing already at
    that path, a planted symlink included, is ever written through."""
    path = f"/tmp/{UPLOAD_NAME}{_random.token_hex(8)}"  # noqa: S108  # created O_EXCL, 0600
    shell.put(data, path, exclusive=True)
    return path


#: ``FileWrite.expected_sha256`` of a file that must not exist yet.
MISSING = "missing"
#: The exit status of an install that found a file changed since it was read.
CONFLICT_EXIT = 75


@dataclass(frozen=True)
class FileWrite:
    """One file of a batched write (:func:`write_files`): its path, bytes and mode, an
    owner/group (None: whoever installs it), and ``backup``: keep a timestamped copy of
    the file it replaces (for a file that is not ours). ``folder_mode``: create or set
    the parent folder with that mode (and the owner/group), for a private ``~/.kube``.
    ``expected_sha256``: compare-and-swap; the file must still have that checksum
    (:data:`MISSING`: still be absent), else nothing is written (:data:`CONFLICT_EXIT`)."""

    path: str
    data: bytes
    mode: int = 0o644
    owner: str | None = None
    group: str | None = None
    backup: bool = False
    folder_mode: int | None = None
    expected_sha256: str | None = None

    @property
    def folder(self) -> str:
        return str(PurePosixPath(self.path).parent)

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


def _glob_literal(name: str) -> str:
    """``name`` matched literally by ``find -name`` (its glob characters escaped)."""
    return re.sub(r"([*?\[\\])", r"\\\1", name)


def _folder_command(entry: FileWrite) -> str:
    folder = quote(entry.folder)
    if entry.folder_mode is None:
        return f"mkdir -p {folder}"
    owner = "".join(f" {flag} {quote(value)}" for flag, value in
                    (("-o", entry.owner), ("-g", entry.group)) if value)
    return f"install -d -m {entry.folder_mode:o}{owner} {folder}"


def _unchanged_check(entry: FileWrite) -> str:
    path = quote(entry.path)
    return (f"if [ -f {path} ]; then cur=$(sha256sum < {path} | cut -d' ' -f1); "
            f"else cur={MISSING}; fi; "
            f'[ "$cur" = {quote(str(entry.expected_sha256))} ] || exit {CONFLICT_EXIT}')


def install_files_command(bundle: str, files: Sequence[FileWrite], suffix: str, *,
                          lock: str | None = None, pause: float | None = None) -> str:
    """Install every file of ``files`` from ``bundle`` (their bytes one after the other,
    in order), each atomically: cut out beside its target (created exclusively, 0600),
    checksum checked, mode and owner set, fsynced, renamed over the target, its folder
    fsynced. ``backup`` copies the old file to ``<path>.<suffix>`` first (and prints
    ``backup=<index>``). With ``lock`` (a file path), all of it runs under ``flock`` on
    that file, compare-and-swap checks first. The bundle is removed at the end; a failure
    leaves no staged file behind (the trap), a killed install one that the next install
    beside it removes after ten minutes. ``pause``: seconds of sleep before the first
    rename (a test hook, to kill a writer there)."""
    staged = [f"{f.folder}/.{f.name}.kubebastion-{_random.token_hex(4)}" for f in files]
    steps = ["set -e", "trap " + quote("rm -f -- " + " ".join(quote(s) for s in staged)
                                       ) + " EXIT"]
    steps += dict.fromkeys(_folder_command(f) for f in files)
    if lock:
        steps += [f"exec 9>>{quote(lock)}", "flock -w 60 9"]
    steps += [_unchanged_check(f) for f in files if f.expected_sha256 is not None]
    offset = 0
    for index, (entry, stage) in enumerate(zip(files, staged, strict=True)):
        path, part = quote(entry.path), quote(stage)
        if entry.backup:
            steps.append(f"if [ -f {path} ]; then cp -p {path} "
                         f"{quote(f'{entry.path}.{suffix}')}; echo backup={index}; fi")
        steps.append(f"(umask 077 && set -C && tail -c +{offset + 1} {quote(bundle)} "
                     f"| head -c {len(entry.data)} > {part})")
        wanted = hashlib.sha256(entry.data).hexdigest()
        steps.append(f'[ "$(sha256sum < {part} | cut -d" " -f1)" = {wanted} ] || '
                     f"{{ echo {quote(f'{entry.path}: the upload arrived damaged')} >&2; "
                     "exit 1; }")
        steps.append(f"chmod {entry.mode:o} {part}")
        if entry.owner:
            steps.append(f"chown {quote(entry.owner)} {part}")
        if entry.group:
            steps.append(f"chgrp {quote(entry.group)} {part}")
        steps.append(f"sync {part}")
        if pause and index == 0:
            steps.append(f"sleep {pause:g}")
        steps.append(f"mv -f {part} {path}")
        steps.append(f"sync {quote(entry.folder)} 2>/dev/null || true")
        offset += len(entry.data)
    steps += [f"rm -f {quote(bundle)}", SWEEP_STALE_UPLOADS]
    steps += dict.fromkeys(
        f"find {quote(f.folder)} -maxdepth 1 -type f "
        f"-name {quote('.' + _glob_literal(f.name) + '.kubebastion-*')} -mmin +10 "
        "-delete 2>/dev/null || true" for f in files)
    return "\n".join(steps)


def backups_made(stdout: str, files: Sequence[FileWrite], suffix: str) -> list[str]:
    """The backups an install made (its ``backup=<index>`` lines), as paths."""
    return [f"{files[int(line[7:])].path}.{suffix}" for line in stdout.splitlines()
            if line.startswith("backup=") and line[7:].isdigit()]


def write_files(shell: HostShell, files: Sequence[FileWrite], *, sudo: bool = False,
                then: str = "", display: str = "install files", lock: str | None = None,
                pause: float | None = None) -> list[str]:
    """Write every file of ``files`` in two round trips whatever their number: one upload
    of all their bytes, one script installing each atomically (see
    :func:`install_files_command`), followed by ``then`` (shell, same script, under the
    same lock) when given. Returns the backups made. The caller compares first (it
    usually read the files already); nothing here does, but ``expected_sha256``."""
    if not files:
        if then:
            run(shell, then, sudo=sudo, display=display)
        return []
    bundle = upload(shell, b"".join(entry.data for entry in files))
    suffix = backup_suffix()
    try:
        script = install_files_command(bundle, files, suffix, lock=lock, pause=pause)
        result = run(shell, f"{script}\n{then}" if then else script, sudo=sudo,
                     display=display)
    except SSHError:
        raise  # the connection is gone: no cleanup to attempt (the upload is 0600)
    except BaseException:
        run(shell, f"rm -f {quote(bundle)}", check=False)
        raise
    return backups_made(result.stdout, files, suffix)


def write_file(shell: HostShell, path: str, data: bytes, *, mode: int = 0o644,
               owner: str | None = None, group: str | None = None, sudo: bool = False,
               backup: bool = False, dry_run: bool = False) -> bool:
    """Make ``path`` hold ``data`` with ``mode``/owner; returns whether anything changed.

    Compares first and writes nothing when all matches; the write is
    :func:`write_files`' (staged beside the target, renamed over it: a reader never sees
    a partial file). ``backup`` keeps a timestamped copy of a previous, different file.
    """
    state = file_state(shell, path, sudo=sudo)
    wanted = hashlib.sha256(data).hexdigest()
    if (state.exists and state.sha256 == wanted and state.mode == mode
            and (owner is None or state.owner == owner)
            and (group is None or state.group == group)):
        return False
    if dry_run:
        return True
    replaces_other = state.exists and state.sha256 != wanted
    write_files(shell, [FileWrite(path, data, mode, owner, group, backup and replaces_other)],
                sudo=sudo, display=f"install {path}")
    return True
