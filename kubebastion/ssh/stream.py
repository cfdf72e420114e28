"""Run a long command and hand its output over line by line, as it comes.

``HostShell.run`` returns the output at the end, which is right for short commands and
useless for a playbook that runs for half an hour. ``HostShell.stream`` is the same exec
loop in its streaming mode (over SSH: a channel of the host's existing connection, no new
login; locally: a pipe), stderr merged into stdout; here its chunks become whole,
redacted lines, and the full text is returned too.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass

from kubebastion.secrets import redact
from kubebastion.ssh.shell import HostShell

LineHandler = Callable[[str], None]


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

    code = shell.stream(command, splitter.feed, timeout, before_stop=before_stop)
    splitter.feed(b"", final=True)  # a last line without its newline
    return StreamResult(code, splitter.text())
