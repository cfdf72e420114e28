"""A host's shell, over SSH or local: the one seam between step logic and a machine.

Steps build command strings with pure functions and hand them to a ``HostShell``. The
SSH flavour wraps the Fabric connection from the Nornir plugin; the local flavour serves
a bastion that kubebastion runs on (``data.local: true``), without SSH to itself.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paramiko
from nornir.core.configuration import Config
from nornir.core.inventory import Host
from nornir.core.task import Task

from kubebastion.atomic_file import replace_file
from kubebastion.errors import SSHError
from kubebastion.interrupt import running
from kubebastion.ssh.channel_send import (
    eof_unless_closed,
    send_unless_closed,
    signal_unless_closed,
)
from kubebastion.ssh.connection import CONNECTION_NAME, Connection

#: Receives a streamed command's output, chunk by chunk, as it arrives.
OutputHandler = Callable[[bytes], None]


@dataclass(frozen=True)
class CommandResult:
    """What a command did. ``exit_code`` is None when it timed out."""

    exit_code: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


#: A command's input: text, bytes, or chunks of bytes sent as they come (a tar made while
#: it is sent: one stream over one channel, never all in memory).
Stdin = str | bytes | Iterable[bytes] | None


def stdin_chunks(stdin: Stdin) -> Iterator[bytes]:
    if stdin is None:
        return
    if isinstance(stdin, str):
        yield stdin.encode()
    elif isinstance(stdin, bytes):
        yield stdin
    else:
        yield from stdin


class HostShell(Protocol):
    name: str
    command_timeout: float

    def run(self, command: str, *, stdin: Stdin = None,
            timeout: float | None = None) -> CommandResult: ...

    def stream(self, command: str, on_output: OutputHandler, timeout: float, *,
               before_stop: Callable[[], object] | None = None) -> int | None:
        """Run ``command`` with stdin closed and stderr merged into stdout, handing each
        chunk of output to ``on_output`` as it arrives (a playbook's live output); the exit
        status, None when ``timeout`` passed first. Interrupted (``kubebastion.interrupt``),
        ``before_stop`` runs, then the command's process group is signalled."""

    def put(self, data: bytes, path: str, *, exclusive: bool = False) -> None:
        """Write ``data`` to ``path`` as the login user, created with mode 0600;
        ``exclusive``: fail if ``path`` exists (a fresh name in a shared folder)."""

    def get(self, path: str) -> bytes: ...


class SSHShell:
    """Commands over the host's SSH connection, one ``exec`` channel each.

    Plain Paramiko rather than Fabric's runner: no reader threads per command, both
    output streams drained together (a command printing megabytes on either cannot
    deadlock), a hard deadline, and stdin written once and closed — if the command ends
    before reading it (sudo that needed no password), that is not an error.
    """

    def __init__(self, name: str, connection: Connection, command_timeout: float) -> None:
        self.name = name
        self.connection = connection
        self.command_timeout = command_timeout

    def run(self, command: str, *, stdin: Stdin = None,
            timeout: float | None = None) -> CommandResult:
        return self._exec(command, timeout or self.command_timeout, stdin=stdin)

    def stream(self, command: str, on_output: OutputHandler, timeout: float, *,
               before_stop: Callable[[], object] | None = None) -> int | None:
        return self._exec(command, timeout, on_output=on_output,
                          before_stop=before_stop).exit_code

    def _exec(self, command: str, limit: float, *, stdin: Stdin = None,
              on_output: OutputHandler | None = None,
              before_stop: Callable[[], object] | None = None) -> CommandResult:
        """One ``exec`` channel: start, send stdin (if any) and EOF, then ``_collect``.
        ``on_output`` given: stderr merged into stdout, each chunk handed over as it comes
        and nothing kept here (a playbook's output can run to megabytes)."""
        transport = self.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHError(f"{self.name}: connection lost")
        try:
            channel = transport.open_session(timeout=min(limit, 30.0))
            if on_output is not None:
                channel.set_combine_stderr(True)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.name}: connection lost: {exc or type(exc).__name__}"
                           ) from None

        def stop() -> None:
            if before_stop is not None:
                before_stop()
            signal_unless_closed(channel)

        with channel, running(self.name, stop):
            # Never sendall/shutdown_write here: see kubebastion.ssh.channel_send.
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                channel.settimeout(limit)  # a peer that stops reading fails the send
                for chunk in stdin_chunks(stdin):
                    if not send_unless_closed(channel, chunk):
                        break
                eof_unless_closed(channel)
            try:
                return _collect(self.name, channel, limit, on_output)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise SSHError(f"{self.name}: connection lost while the command ran: "
                               f"{exc or type(exc).__name__}") from None

    def _sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP session, with the command deadline on every read/write
        (a cut link must fail the upload, not block it)."""
        sftp: paramiko.SFTPClient = self.connection.sftp()
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self.command_timeout)
        return sftp

    def put(self, data: bytes, path: str, *, exclusive: bool = False) -> None:
        try:
            sftp = self._sftp()
            remote = sftp.open(path, "wxb" if exclusive else "wb")  # x: O_EXCL
            try:
                remote.chmod(0o600)
                remote.write(data)
            except BaseException:
                self._abandon_sftp()  # a graceful close would wait another deadline
                raise
            remote.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._abandon_sftp()
            raise SSHError(f"{self.name}: upload to {path} failed: "
                           f"{exc or type(exc).__name__}") from None

    def _abandon_sftp(self) -> None:
        """Drop the SFTP session without waiting on it; the next transfer opens a new one."""
        self.connection.drop_sftp()

    def get(self, path: str) -> bytes:
        sftp = self._sftp()
        with sftp.open(path, "rb") as remote:
            return bytes(remote.read())


class LocalShell:
    """The machine kubebastion runs on, through ``sh -c``."""

    def __init__(self, name: str, command_timeout: float) -> None:
        self.name = name
        self.command_timeout = command_timeout

    def run(self, command: str, *, stdin: Stdin = None,
            timeout: float | None = None) -> CommandResult:
        """In a session of its own, like a command over SSH: Ctrl-C in a terminal does not
        reach it, ``kubebastion.interrupt`` stops it (and all it started) instead."""
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        with running(self.name, lambda: kill_session(proc)):
            try:
                out, err = proc.communicate(b"".join(stdin_chunks(stdin)),
                                            timeout=timeout or self.command_timeout)
            except subprocess.TimeoutExpired:
                kill_session(proc, signal.SIGKILL)
                out, err = proc.communicate()
                return CommandResult(None, _text(out), _text(err))
        return CommandResult(proc.returncode, _text(out), _text(err))

    def stream(self, command: str, on_output: OutputHandler, timeout: float, *,
               before_stop: Callable[[], object] | None = None) -> int | None:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

        def stop() -> None:
            if before_stop is not None:
                before_stop()
            kill_session(proc)

        with running(self.name, stop):
            return _follow_local(proc, on_output, timeout)

    def put(self, data: bytes, path: str, *, exclusive: bool = False) -> None:
        target = Path(path).expanduser()
        if exclusive:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            return
        replace_file(target, data)

    def get(self, path: str) -> bytes:
        return Path(path).expanduser().read_bytes()


def kill_session(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Signal a local command started with ``start_new_session`` and all it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


_CHUNK = 65536
_STDERR_DRAIN = 0.1  # seconds: how long stdout may block before stderr is drained


def _collect(name: str, channel: paramiko.Channel, limit: float,
             on_output: OutputHandler | None = None) -> CommandResult:
    """The exec loop: drain stdout and stderr until EOF and the exit status, or give up at
    the deadline. With ``on_output`` (stderr merged, see ``SSHShell._exec``), stdout goes
    there as it comes instead of into the result.

    It waits in ``recv`` (Paramiko's buffer wakes it as soon as data arrives) and then on
    the channel's status event, never in ``select`` on the channel: that makes Paramiko
    create a pipe whose close races its transport thread, which can kill the whole
    connection (see ``kubebastion.ssh.channel_socket``), and never in a sleep. Stderr has
    no event of its own to wait on: while it is separate, the wait in ``recv`` is cut to
    ``_STDERR_DRAIN`` so that a command flooding stderr cannot fill the channel window and
    stall; merged, ``recv`` waits up to the deadline.
    """
    out: list[bytes] = []
    err: list[bytes] = []
    deliver = out.append if on_output is None else on_output
    wait = _STDERR_DRAIN if on_output is None else limit
    deadline = time.monotonic() + limit

    def result(status: int | None) -> CommandResult:
        return CommandResult(status, _text(b"".join(out)), _text(b"".join(err)))

    # The exit status can arrive before the last output: read stdout to its EOF (after
    # which nothing more comes), then wait for the status.
    while True:
        while channel.recv_stderr_ready():
            err.append(channel.recv_stderr(_CHUNK))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return result(None)
        channel.settimeout(min(remaining, wait))
        try:
            data = channel.recv(_CHUNK)
        except TimeoutError:
            continue
        if not data:
            break
        deliver(data)
    if not channel.status_event.wait(max(deadline - time.monotonic(), 0.0)):
        return result(None)
    while channel.recv_stderr_ready():
        err.append(channel.recv_stderr(_CHUNK))
    status = channel.recv_exit_status()
    transport = channel.get_transport()
    if status == -1 and (transport is None or not transport.is_active()):
        raise SSHError(f"{name}: connection lost while the command ran")
    return result(status)


def _follow_local(proc: subprocess.Popen[bytes], on_output: OutputHandler,
                  timeout: float) -> int | None:
    """``LocalShell.stream``'s loop: a pipe may be waited on with ``select`` (no channel
    pipe race here); killed at the deadline."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                proc.kill()
                proc.wait()
                return None
            if not selector.select(remaining):
                continue
            data = os.read(proc.stdout.fileno(), _CHUNK)
            if not data:
                break
            on_output(data)
        return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    finally:
        selector.close()
        proc.stdout.close()


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def shell_for(task: Task) -> HostShell:
    """The shell of the task's host: local when the inventory says so, else SSH."""
    return shell_for_host(task.host, task.nornir.config)


def shell_for_host(host: Host, config: Config) -> HostShell:
    """The shell of any inventory host (a step on the bastion reading a control plane)."""
    extras = host.get_connection_parameters(CONNECTION_NAME).extras or {}
    timeout = float(extras.get("command_timeout", 300.0))
    if host.get("local") is True:
        return LocalShell(host.name, timeout)
    connection = host.get_connection(CONNECTION_NAME, config)
    return SSHShell(host.name, connection, timeout)
