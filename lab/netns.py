"""Thin, safe wrappers around network namespaces and ``ip``.

Why a module of its own: every lab operation boils down to "run this in that namespace"
or "which processes live in that namespace", and both must be impossible to aim at the
root namespace by accident. Namespace names are validated before use, and process
discovery compares namespace inodes (what ``ip netns pids`` does) so cleanup can only
ever signal processes that are inside a lab namespace.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from lab.topology import LabError

NETNS_DIR = "/run/netns"
_NS_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def _check_ns(ns: str) -> None:
    if not _NS_NAME_RE.match(ns):
        raise LabError(f"refusing odd namespace name {ns!r}")


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = 30.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command with captured text output; raise :class:`LabError` with stderr on failure."""
    try:
        proc = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip()}"
        )
    return proc


def exec_in(
    ns: str,
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = 30.0,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside lab namespace ``ns`` (network namespace only) and capture output.

    Uses ``ip netns exec``, so the command sees the namespace's interfaces, routes and
    ``/proc/sys/net`` but the machine's real filesystem (not a lab host's bind mounts; see
    :func:`lab.hosts.host_exec` for that). Never raises on a non-zero exit unless
    ``check``; raises :class:`LabError` on timeout so a hung probe cannot hang a test.
    """
    _check_ns(ns)
    return run(["ip", "netns", "exec", ns, *argv], input=input, timeout=timeout, check=check)


def list_namespaces() -> list[str]:
    """Names under /run/netns (what ``ip netns list`` shows), without spawning ``ip``."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def namespace_exists(ns: str) -> bool:
    _check_ns(ns)
    return os.path.exists(os.path.join(NETNS_DIR, ns))


def _ns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pid_in_namespace(pid: int, ns: str) -> bool:
    """True when ``pid`` is a live (non-zombie) process whose network namespace is ``ns``."""
    _check_ns(ns)
    want = _ns_id(os.path.join(NETNS_DIR, ns))
    if want is None or pid <= 1:
        return False
    if _ns_id(f"/proc/{pid}/ns/net") != want:
        return False
    return _alive(pid)


def wait_for_pidfile(pidfile: Path, ns: str, timeout: float) -> int | None:
    """The pid a daemon wrote to ``pidfile`` once that process is live in namespace ``ns``
    (a daemon writes it after binding); None when it is not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.01)
            continue
        if pid_in_namespace(pid, ns):
            return pid
        time.sleep(0.01)
    return None


def runs_in_namespace(pid: int, ns: str, argument: str) -> bool:
    """True when ``pid`` is live in namespace ``ns`` and its command line holds
    ``argument`` (a config file or script of ours: a reused pid is not taken for ours)."""
    if not pid_in_namespace(pid, ns):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return argument.encode() in cmdline


def pids_in_namespaces(namespaces: Iterable[str]) -> dict[str, list[int]]:
    """Processes per lab namespace, found the way ``ip netns pids`` does it.

    One pass over /proc for all namespaces instead of one ``ip netns pids`` process per
    namespace (61+ namespaces at full size).
    """
    wanted: dict[tuple[int, int], str] = {}
    for ns in namespaces:
        _check_ns(ns)
        ident = _ns_id(os.path.join(NETNS_DIR, ns))
        if ident is not None:
            wanted[ident] = ns
    found: dict[str, list[int]] = {ns: [] for ns in wanted.values()}
    if not wanted:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        ident = _ns_id(f"/proc/{pid}/ns/net")
        if ident in wanted:
            found[wanted[ident]].append(pid)
    return found


def pids_running(ns: str, *needles: bytes) -> list[int]:
    """Processes in namespace ``ns`` whose command line holds every one of ``needles``
    (tests use it to find the one process to kill)."""
    found = []
    for pid in pids_in_namespaces([ns]).get(ns, []):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue
        if all(needle in cmdline for needle in needles):
            found.append(pid)
    return found


def kill_namespace_processes(namespaces: Iterable[str], grace: float = 2.0) -> int:
    """SIGTERM, then SIGKILL, every process inside the given lab namespaces.

    Loops because sshd may fork a new session child while we are killing its siblings.
    Returns how many processes were signalled.
    """
    nss = list(namespaces)
    signalled: set[int] = set()
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while True:
        pids = [p for ps in pids_in_namespaces(nss).values() for p in ps]
        live = [p for p in pids if _alive(p)]
        if not live:
            return len(signalled)
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        for pid in live:
            try:
                os.kill(pid, sig)
                signalled.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        if sig == signal.SIGKILL and time.monotonic() > deadline + 5:
            raise LabError(f"processes survive SIGKILL in {nss}: {live}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def pid_alive(pid: int) -> bool:
    """True for a live, non-zombie process (``kill(pid, 0)`` also succeeds on zombies)."""
    return pid > 1 and _alive(pid)


def ip_batch(lines: Sequence[str], ns: str | None = None, timeout: float = 60.0) -> None:
    """Apply many ``ip`` commands with one process (``ip [-n NS] -batch -``).

    Creating 60+ namespaces and veth pairs one ``ip`` process at a time costs seconds;
    a batch costs milliseconds.
    """
    if not lines:
        return
    argv = ["ip"]
    if ns is not None:
        _check_ns(ns)
        argv += ["-n", ns]
    argv += ["-batch", "-"]
    run(argv, input="\n".join(lines) + "\n", timeout=timeout)


def link_exists(ifname: str) -> bool:
    """Whether an interface exists in the root namespace (reads sysfs, no ``ip`` process)."""
    return os.path.exists(f"/sys/class/net/{ifname}")
