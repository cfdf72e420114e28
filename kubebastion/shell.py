"""A host's shell, over SSH or local: the one seam between step logic and a machine.

Steps build command strings with pure functions and hand them to a ``HostShell``. The
SSH flavour wraps the Fabric connection from the Nornir plugin; the local flavour serves
a bastion that kubebastion runs on (``data.local: true``), without SSH to itself.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import fabric
from invoke.exceptions import CommandTimedOut
from nornir.core.task import Task

from kubebastion.connection import CONNECTION_NAME
from kubebastion.errors import SSHError


@dataclass(frozen=True)
class CommandResult:
    """What a command did. ``exit_code`` is None when it timed out."""

    exit_code: int | None
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class HostShell(Protocol):
    name: str
    command_timeout: float

    def run(self, command: str, *, stdin: str | None = None,
            timeout: float | None = None) -> CommandResult: ...

    def put(self, data: bytes, path: str) -> None:
        """Write ``data`` to ``path`` as the login user, created with mode 0600."""

    def get(self, path: str) -> bytes: ...


class SSHShell:
    def __init__(self, name: str, connection: fabric.Connection, command_timeout: float) -> None:
        self.name = name
        self.connection = connection
        self.command_timeout = command_timeout

    def run(self, command: str, *, stdin: str | None = None,
            timeout: float | None = None) -> CommandResult:
        in_stream: io.StringIO | bool = io.StringIO(stdin) if stdin is not None else False
        try:
            result = self.connection.run(
                command, hide=True, warn=True, in_stream=in_stream,
                timeout=timeout or self.command_timeout,
            )
        except CommandTimedOut as exc:
            return CommandResult(None, exc.result.stdout, exc.result.stderr)
        except (OSError, EOFError) as exc:
            raise SSHError(f"{self.name}: connection lost: {exc or type(exc).__name__}") from None
        return CommandResult(result.exited, result.stdout, result.stderr)

    def put(self, data: bytes, path: str) -> None:
        sftp = self.connection.sftp()
        with sftp.open(path, "wb") as remote:
            remote.chmod(0o600)
            remote.write(data)

    def get(self, path: str) -> bytes:
        sftp = self.connection.sftp()
        with sftp.open(path, "rb") as remote:
            return bytes(remote.read())


class LocalShell:
    """The machine kubebastion runs on, through ``sh -c``."""

    def __init__(self, name: str, command_timeout: float) -> None:
        self.name = name
        self.command_timeout = command_timeout

    def run(self, command: str, *, stdin: str | None = None,
            timeout: float | None = None) -> CommandResult:
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", command], input=stdin if stdin is not None else "",
                capture_output=True, text=True, timeout=timeout or self.command_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return CommandResult(None, _text(exc.stdout), _text(exc.stderr))
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)

    def put(self, data: bytes, path: str) -> None:
        target = Path(path).expanduser()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)

    def get(self, path: str) -> bytes:
        return Path(path).expanduser().read_bytes()


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def shell_for(task: Task) -> HostShell:
    """The shell of the task's host: local when the inventory says so, else SSH."""
    host = task.host
    extras = host.get_connection_parameters(CONNECTION_NAME).extras or {}
    timeout = float(extras.get("command_timeout", 300.0))
    if host.get("local") is True:
        return LocalShell(host.name, timeout)
    connection = host.get_connection(CONNECTION_NAME, task.nornir.config)
    return SSHShell(host.name, connection, timeout)
