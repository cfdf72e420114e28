"""One lock per cluster on the bastion, held for the whole of any run that changes something.

Two deploys of one cluster at once break each other in ways that look unrelated (a checkout
upload's ``tar: Error is not recoverable``, a venv build's ``ensurepip ... exit status 1``),
so a run that changes the bastion or the cluster takes this lock before its first change
and the loser stops at once, changing nothing, naming who holds it.

The lock is a ``flock`` held by a small process on the bastion that reads its stdin until
EOF. EOF comes when this run closes the channel at its end, or when the connection dies
(kill -9 of the operator's process, a laptop losing Wi-Fi: sshd then closes the command's
pipes). So a dead run never leaves a stale lock, and no timeout has to guess when a holder
is gone. The holder writes who it is (operator host and user, pid, task, since when) into
the lock file, where a loser reads it. The file lives in the bastion user's home, so runs
that log into the bastion as different users do not see each other's lock.

Nested uses in one run (``deploy`` calls the nat step, which also locks) share the outer
lock; another run, in this process or another, waits its turn like any other (the locks a
run holds are part of the run: ``kubebastion.runstate``). A dry run takes none (it changes
nothing).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import paramiko

from kubebastion.errors import RunLockedError, SSHError
from kubebastion.runstate import LOCKS, run_state
from kubebastion.runtime import Run
from kubebastion.ssh.channel_send import eof_unless_closed
from kubebastion.ssh.remote import quote
from kubebastion.ssh.shell import HostShell, LocalShell, SSHShell, shell_for_host

LOCK_DIR = ".kubebastion/locks"  # under the bastion user's $HOME
HELD_CODE = 75
_START_TIMEOUT = 30.0
_RELEASE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as the holder wrote it."""

    host: str
    user: str
    pid: int
    task: str
    since: str

    def to_json(self) -> str:
        return json.dumps({"host": self.host, "user": self.user, "pid": self.pid,
                           "task": self.task, "since": self.since}, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(str(data["host"]), str(data["user"]), int(data["pid"]),
                       str(data["task"]), str(data["since"]))
        except (ValueError, KeyError, TypeError):
            return None

    @classmethod
    def this_process(cls, task: str) -> Holder:
        return cls(socket.gethostname(), getpass.getuser(), os.getpid(), task,
                   datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def lock_file(cluster: str) -> str:
    """The lock's path relative to the bastion user's home (shown to people as ``~/...``)."""
    return f"{LOCK_DIR}/{cluster}.lock"


def holder_script(cluster: str, holder: Holder) -> str:
    """Take the lock or say who has it; then hold it until stdin ends.

    ``<>`` opens without truncating, so a loser never erases the winner's details."""
    folder = f'"$HOME"/{quote(LOCK_DIR)}'
    path = f'"$HOME"/{quote(lock_file(cluster))}'
    return "\n".join([
        "set -u",
        "umask 077",
        f"mkdir -p {folder} || exit 1",
        f"exec 9<>{path} || exit 1",
        f"if ! flock -n 9; then printf 'held '; head -n 1 {path}; echo; exit {HELD_CODE}; fi",
        f"printf '%s\\n' {quote(holder.to_json())} > {path}",
        "echo locked",
        "cat > /dev/null",
        f": > {path}",
    ])


def parse_holder_output(stdout: str) -> tuple[bool, Holder | None]:
    """(we hold the lock, the other holder when we do not)."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    if first == "locked":
        return True, None
    if first.startswith("held"):
        return False, Holder.parse(first[len("held"):].strip())
    return False, None


def describe_held(cluster: str, bastion: str, holder: Holder | None) -> str:
    """One line for the loser: who, since when, and what to do."""
    where = f"~/{lock_file(cluster)} on {bastion}"
    if holder is None:
        who = "another run (it has not written its details yet)"
    else:
        who = (f"`{holder.task}` run by {holder.user}@{holder.host} (pid {holder.pid}) "
               f"since {holder.since}")
    return (f"cluster {cluster} is locked by {who} ({where}); nothing was changed: wait for "
            "that run to end (the lock goes with it, or with its connection) and run again")


class _HeldLock:
    """The holder process of one run: an SSH channel or a local process."""

    def __init__(self, shell: HostShell, script: str) -> None:
        self.shell = shell
        self._channel: paramiko.Channel | None = None
        self._process: subprocess.Popen[bytes] | None = None
        if isinstance(shell, SSHShell):
            self._channel = self._open_channel(shell, script)
        elif isinstance(shell, LocalShell):
            self._process = subprocess.Popen(
                ["/bin/sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, start_new_session=True)
        else:
            raise TypeError(f"cannot hold a lock through {type(shell).__name__}")

    @staticmethod
    def _open_channel(shell: SSHShell, script: str) -> paramiko.Channel:
        transport = shell.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHError(f"{shell.name}: connection lost")
        try:
            channel: paramiko.Channel = transport.open_session(timeout=_START_TIMEOUT)
            channel.exec_command(script)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{shell.name}: cannot take the cluster lock: {exc}") from None
        return channel

    def first_line(self) -> str:
        """The holder's answer (``locked`` or ``held ...``), or "" if it died first."""
        if self._process is not None:
            assert self._process.stdout is not None
            return self._process.stdout.readline().decode(errors="replace")
        assert self._channel is not None
        data = b""
        deadline = time.monotonic() + _START_TIMEOUT
        self._channel.settimeout(0.5)
        while b"\n" not in data and time.monotonic() < deadline:
            try:
                chunk = self._channel.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace")

    def release(self) -> None:
        """End the holder and wait (briefly) until the lock is free for the next run."""
        if self._process is not None:
            with contextlib.suppress(OSError):
                if self._process.stdin is not None:
                    self._process.stdin.close()
            try:
                self._process.wait(_RELEASE_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
            return
        assert self._channel is not None
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            eof_unless_closed(self._channel)
            self._channel.status_event.wait(_RELEASE_TIMEOUT)
        self._channel.close()


@contextlib.contextmanager
def cluster_lock(run: Run, task: str) -> Iterator[None]:
    """Hold the cluster's lock on the bastion for the block (no-op in a dry run, or when
    this run already holds it). Raises ``RunLockedError`` when another run has it."""
    if run.nornir.data.dry_run:
        yield
        return
    cluster, bastion = run.cluster.name, run.cluster.bastion.name
    key = (bastion, cluster)
    held_by_run: set[tuple[str, str]] = run_state(run.nornir.config, LOCKS, set)
    if key in held_by_run:
        yield
        return
    host = run.nornir.inventory.hosts[bastion]
    shell = shell_for_host(host, run.nornir.config)
    held = _HeldLock(shell, holder_script(cluster, Holder.this_process(task)))
    try:
        answer = held.first_line()
        locked, holder = parse_holder_output(answer)
        if not locked:
            if answer.startswith("held"):
                raise RunLockedError(describe_held(cluster, bastion, holder))
            raise SSHError(f"{bastion}: cannot take the cluster lock ~/{lock_file(cluster)} "
                           "(flock missing, or the home folder not writable)")
    except BaseException:
        held.release()
        raise
    held_by_run.add(key)
    try:
        yield
    finally:
        held_by_run.discard(key)
        held.release()
