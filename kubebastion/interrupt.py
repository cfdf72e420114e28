"""Ctrl-C: stop what this run started on the hosts, then say so in one line.

Every remote command runs inside ``running()``, which knows how to stop it: for SSH, the
"signal" channel request, on which sshd kills the command's whole process group (each
command is its own session there); locally, ``killpg`` of the command's own session. A
command that ends by an exception (Ctrl-C in the thread that waits for it) is stopped on
the way out.

That is not enough alone: SIGINT reaches Python's main thread only, while Nornir's
threaded runner waits there for worker threads that run the commands, and on
``KeyboardInterrupt`` it keeps waiting until they end. So a Ctrl-C during the venv build
returned only after pip had finished (or left it running, seen in the lab: about 7 s of
``venv --clear``/pip after the prompt came back, and a rerun that found a half-cleared
venv). ``handling_interrupts()`` installs a SIGINT handler that stops every registered
command from a helper thread at once, then raises ``KeyboardInterrupt`` as Python would.

Steps name what a command is doing with ``activity()``; ``summary()`` turns what was
stopped into the one line the command line prints (exit 130).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import FrameType

#: The shell's exit code for "ended by SIGINT".
INTERRUPTED_CODE = 130
_STOP_WAIT = 15.0
_RESUMES = "the next run resumes where this one stopped (finished steps report no change)"


@dataclass(frozen=True)
class Activity:
    """What a remote command does, and what the next run will do if it is stopped
    (a clause starting "the next run")."""

    what: str
    next_run: str = ""


_ACTIVITY: ContextVar[Activity | None] = ContextVar("kubebastion_activity", default=None)


@contextlib.contextmanager
def activity(what: str, next_run: str = "") -> Iterator[None]:
    """Name the remote commands run in this block (for the interrupt message)."""
    token = _ACTIVITY.set(Activity(what, next_run))
    try:
        yield
    finally:
        _ACTIVITY.reset(token)


@dataclass(eq=False)
class _Command:
    host: str
    activity: Activity | None
    stop: Callable[[], object]
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)

    def stop_once(self) -> None:
        """Stop it, or wait until the thread already stopping it is done (the caller may
        close the connection next)."""
        with self.lock:
            first = not self.stopped
            self.stopped = True
        if not first:
            self.done.wait(_STOP_WAIT)
            return
        try:
            with contextlib.suppress(Exception):  # best effort: the link may be gone too
                self.stop()
        finally:
            self.done.set()
        with _LOCK:
            _STOPPED.append(self)


_LOCK = threading.Lock()
_RUNNING: set[_Command] = set()
_STOPPED: list[_Command] = []
_STAGE: list[str] = []
_STOPPER: list[threading.Thread] = []


@contextlib.contextmanager
def running(host: str, stop: Callable[[], object]) -> Iterator[None]:
    """Register a remote command for the block; ``stop`` ends it on the host. Leaving the
    block by an exception (KeyboardInterrupt included) stops it."""
    command = _Command(host, _ACTIVITY.get(), stop)
    with _LOCK:
        _RUNNING.add(command)
    try:
        yield
    except BaseException:
        command.stop_once()
        raise
    finally:
        with _LOCK:
            _RUNNING.discard(command)


def stop_all() -> None:
    """Stop every registered command (from any thread)."""
    with _LOCK:
        commands = list(_RUNNING)
    for command in commands:
        command.stop_once()


def set_stage(stage: str) -> None:
    """What the run is doing, for the message (``deploy`` names its current step)."""
    _STAGE[:] = [stage]


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    stopper = threading.Thread(target=stop_all, name="kubebastion-stop", daemon=True)
    stopper.start()
    _STOPPER.append(stopper)
    raise KeyboardInterrupt


@contextlib.contextmanager
def handling_interrupts() -> Iterator[None]:
    """Ctrl-C stops the remote commands at once (see the module docstring). Only from the
    main thread (Python's rule for signal handlers); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _LOCK:
        _STOPPED.clear()
    _STAGE.clear()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def summary(command: str) -> str:
    """One line: what was interrupted (``command`` as the operator typed it, e.g.
    ``invoke deploy``), what was stopped on the hosts, what comes next. Waits (briefly)
    for the stopping to finish first."""
    for stopper in _STOPPER:
        stopper.join(_STOP_WAIT)
    _STOPPER.clear()
    with _LOCK:
        stopped = list(_STOPPED)
    where = f"`{command}`" + (f" at {_STAGE[0]}" if _STAGE else "")
    if stopped:
        done = "; ".join(sorted({f"{c.host}: {c.activity.what if c.activity else 'a command'}"
                                 for c in stopped}))
        host_part = f"stopped on the hosts: {done}"
    else:
        host_part = "nothing was running on the hosts"
    plans = sorted({c.activity.next_run for c in stopped if c.activity and c.activity.next_run})
    next_part = "; ".join(plans) + ", then resumes" if plans else _RESUMES
    return f"interrupted {where}; {host_part}; {next_part}"
