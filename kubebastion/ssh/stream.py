"""Run a long command and hand its output over line by line, as it comes.

``HostShell.run`` returns the output at the end, which is right for short commands and
useless for a playbook that runs for half an hour. Here the SSH flavour reads a Paramiko
channel of the host's existing connection (no new login) and the local flavour a pipe;
both merge stderr into stdout, stop at a deadline and return the full text too.
"""

from __future__ import annotations

import codecs
import os
import selectors
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from kubebastion.errors import SSHError
from kubebastion.interrupt import running
from kubebastion.secrets import redact
from kubebastion.ssh.channel_send import eof_unless_closed, signal_unless_closed
from kubebastion.ssh.shell import HostShell, LocalShell, SSHShell, kill_session

LineHandler = Callable[[str], None]
_CHUNK = 65536
_POLL = 0.5


@dataclass(frozen=True)
class StreamResult:
    """``exit_code`` None: the deadline passed (or the channel died) before it exited."""

    exit_code: int | None
    output: str


class _LineSplitter:
    """Bytes in, whole lines out (redacted); a partial line waits for its end."""

    def __init__(self, on_line: LineHandler) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._on_line = on_line
        self.lines: list[str] = []

    def feed(self, data: bytes, final: bool = False) -> None:
        self._pending += self._decoder.decode(data, final=final)
        *complete, self._pending = self._pending.split("\n")
        if final and self._pending:
            complete.append(self._pending)
            self._pending = ""
        for line in complete:
            line = redact(line.rstrip("\r"))
            self.lines.append(line)
            self._on_line(line)

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


def stream_command(shell: HostShell, command: str, on_line: LineHandler,
                   timeout: float, *, stop_first: str | None = None) -> StreamResult:
    """Run ``command`` with stdin closed, calling ``on_line`` for each output line.

    Interrupted (see ``kubebastion.interrupt``), the command's process group is signalled;
    ``stop_first`` is run before that, for what the command put in a group of its own
    (``timeout`` does so with the playbook)."""
    splitter = _LineSplitter(on_line)

    def before_stop() -> None:
        if stop_first is not None:
            shell.run(stop_first, timeout=30)

    if isinstance(shell, SSHShell):
        code = _stream_ssh(shell, command, splitter, timeout, before_stop)
    elif isinstance(shell, LocalShell):
        code = _stream_local(shell.name, command, splitter, timeout, before_stop)
    else:
        raise TypeError(f"cannot stream a command through {type(shell).__name__}")
    return StreamResult(code, splitter.text())


def _stream_ssh(shell: SSHShell, command: str, splitter: _LineSplitter,
                timeout: float, before_stop: Callable[[], None]) -> int | None:
    transport = shell.connection.client.get_transport()
    if transport is None or not transport.is_active():
        raise SSHError(f"{shell.name}: connection closed")
    try:
        channel: paramiko.Channel = transport.open_session(timeout=30)
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        eof_unless_closed(channel)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise SSHError(f"{shell.name}: cannot start command: {exc}") from None
    deadline = time.monotonic() + timeout
    channel.settimeout(_POLL)

    def stop() -> None:
        before_stop()
        signal_unless_closed(channel)

    try:
        with running(shell.name, stop):
            return _follow(channel, splitter, deadline)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise SSHError(f"{shell.name}: connection lost during a long command: "
                       f"{exc or type(exc).__name__}") from None
    finally:
        channel.close()


def _follow(channel: paramiko.Channel, splitter: _LineSplitter, deadline: float
            ) -> int | None:
    while True:
        if time.monotonic() > deadline:
            splitter.feed(b"", final=True)
            return None
        try:
            data = channel.recv(_CHUNK)
        except TimeoutError:
            continue
        if not data:
            break
        splitter.feed(data)
    splitter.feed(b"", final=True)
    while not channel.exit_status_ready():
        if time.monotonic() > deadline or channel.closed:
            return None
        time.sleep(0.05)
    return channel.recv_exit_status()


def _stream_local(name: str, command: str, splitter: _LineSplitter, timeout: float,
                  before_stop: Callable[[], None]) -> int | None:
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None

    def stop() -> None:
        before_stop()
        kill_session(proc)

    with running(name, stop):
        return _follow_local(proc, splitter, timeout)


def _follow_local(proc: subprocess.Popen[bytes], splitter: _LineSplitter,
                  timeout: float) -> int | None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                splitter.feed(b"", final=True)
                return None
            if not selector.select(_POLL):
                continue
            data = os.read(proc.stdout.fileno(), _CHUNK)
            if not data:
                break
            splitter.feed(data)
        splitter.feed(b"", final=True)
        return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    finally:
        selector.close()
        proc.stdout.close()
