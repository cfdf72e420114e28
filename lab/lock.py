"""Machine-wide locks for the lab.

Only one lab can be up on a machine (the operator link address is fixed), and several
people or test sessions may share the machine: ``up``/``down`` serialize on
:data:`OPERATION_LOCK`, and a whole test session can hold :data:`SESSION_LOCK` so a second
session waits instead of tearing down the first one's lab.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.topology import LabError

LOCK_DIR = Path("/run/lock")
OPERATION_LOCK = LOCK_DIR / "kubebastion-lab.lock"
SESSION_LOCK = LOCK_DIR / "kubebastion-lab-session.lock"


@contextmanager
def held(path: Path = OPERATION_LOCK, timeout: float = 120.0) -> Iterator[None]:
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
