"""Locks for the lab: per lab (name prefix), plus one short machine-wide allocation lock.

Several labs can be up on a machine at once, one per name prefix: everything of a lab
lives in its own ``<prefix>-*`` namespaces except its ``<prefix>-op`` link, whose /30 is
picked from 198.18.0.0/24 so it differs from every other lab's. So:

- ``up``/``down`` of a lab serialize on :func:`operation_lock` of its prefix;
- a whole test session holds :func:`session_lock` of its prefix, so a second session with
  the same prefix waits instead of tearing the first one's lab down, while a session with
  another prefix runs beside it;
- :data:`MACHINE_LOCK` is held only briefly around what all labs share: choosing a free
  operator /30 until the root link carries it (so two labs built at once never pick the
  same one), the lab users (useradd/userdel/chpasswd lock /etc/passwd and /etc/shadow) and
  the shared mount points and /run/sshd.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.topology import LabError, validate_prefix

LOCK_DIR = Path("/run/lock")
#: Machine-wide, held briefly around what all labs share (see the module docstring).
MACHINE_LOCK = LOCK_DIR / "kubebastion-lab.lock"
#: The old name of that file: older checkouts hold it for a whole ``up``/``down``, which
#: makes this code's short critical sections wait for them (what we want).
OPERATION_LOCK = MACHINE_LOCK
#: Session lock of the default test lab ("kbt"): the file older checkouts held for every
#: test session (they only ever used "kbt"), so old and new sessions still queue on it.
SESSION_LOCK = LOCK_DIR / "kubebastion-lab-session.lock"
LEGACY_SESSION_PREFIX = "kbt"


def operation_lock(prefix: str) -> Path:
    """Serializes ``up``/``down`` of the lab with this name prefix."""
    validate_prefix(prefix)
    return LOCK_DIR / f"kubebastion-lab-{prefix}.lock"


def session_lock(prefix: str) -> Path:
    """Held by a whole test session that uses the lab with this name prefix."""
    validate_prefix(prefix)
    if prefix == LEGACY_SESSION_PREFIX:
        return SESSION_LOCK
    return LOCK_DIR / f"kubebastion-lab-session-{prefix}.lock"


@contextmanager
def held(path: Path = MACHINE_LOCK, timeout: float = 120.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; raise :class:`LabError` after ``timeout``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"another lab operation holds {path} for more than {timeout:.0f}s"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
