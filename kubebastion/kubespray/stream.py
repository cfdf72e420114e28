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

from kubebastion.channel_send import eof_unless_closed
from kubebastion.errors import SSHError
from kubebastion.secrets import redact
from kubebastion.shell import HostShell, LocalShell, SSHShell

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
                   timeout: float) -> StreamResult:
    """Run ``command`` with stdin closed, calling ``on_line`` for each output line."""
    splitter = _LineSplitter(on_line)
    if isinstance(shell, SSHShell):
        code = _stream_ssh(shell, command, splitter, timeout)
    elif isinstance(shell, LocalShell):
        code = _stream_local(command, splitter, timeout)
    else:
        raise TypeError(f"cannot stream a command through {type(shell).__name__}")
    return StreamResult(code, splitter.text())


def _stream_ssh(shell: SSHShell, command: str, splitter: _LineSplitter,
                timeout: float) -> int | None:
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
    try:
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
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise SSHError(f"{shell.name}: connection lost during a long command: "
                       f"{exc or type(exc).__name__}") from None
    finally:
        channel.close()


def _stream_local(command: str, splitter: _LineSplitter, timeout: float) -> int | None:
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
