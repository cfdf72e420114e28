"""kb_workload.py under a profiler or with a candidate kubebastion change applied in-process.

Used by the bench's profile phase to measure what a change to kubebastion would buy before
anyone edits kubebastion: each ``--variant`` monkeypatches one library function in this
process only (the repo is not touched), then runs kb_workload's ``main``::

    .venv/bin/python bench/kb_experiments.py --variant direct-exec -- --config X --workload A

Variants:

- ``clone-config``: every ``fabric.Connection`` gets a clone of the shared Fabric config
  (see ``clone_config``: the shared one is rebuilt by each new connection, racily).
- ``safe-exec``: ``SSHShell.run`` without the EOF/close race and the early-exit-status
  race (see ``safe_exec``).
- ``bastion-first-close``: ``Run.close`` closes the shared bastion transport first.
- ``lazy-init``: kubebastion's package ``__init__`` imports nothing (see ``lazy_init``).
- ``fast-exit``: ``os._exit`` once the results are printed (no interpreter finalization).
- ``parallel-close``: ``Run.close`` closes the node connections from a thread pool, then the
  bastion's, instead of one after another.

``--cprofile PATH`` profiles every thread (one ``cProfile.Profile`` per thread, merged,
timed with each thread's own CPU clock, so the numbers are CPU seconds) and writes pstats to
PATH. ``--timeline PATH`` writes when each connection and task started and ended.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from typing import Any  # noqa: E402


def clone_config() -> None:
    """Each connection gets its own copy of the Fabric config. Fabric's ``Connection``
    sets ``self.inline_ssh_env``, which is not a class attribute, so Invoke stores it as a
    config modification and ``Config.merge()`` rebuilds the *shared* config from ``{}``
    while other threads read it ("No attribute or config key found for 'gateway' ...
    Valid keys: []")."""
    import fabric

    import kubebastion.ssh.connection as kc

    class FabricWithClonedConfig:
        def __getattr__(self, name: str) -> Any:
            return getattr(fabric, name)

        @staticmethod
        def Connection(*args: Any, config: Any, **kwargs: Any) -> Any:
            return fabric.Connection(*args, config=config.clone(), **kwargs)

    kc.fabric = FabricWithClonedConfig()  # type: ignore[attr-defined]


def safe_exec() -> None:
    """``SSHShell.run`` as proposed for kubebastion/ssh/shell.py: no ``shutdown_write`` (the
    command's stdin is /dev/null unless we pass stdin, which kubebastion only does for
    ``sudo -S``, which reads one line), and output drained after both the exit status and
    the EOF.

    Paramiko builds an EOF under the channel lock but sends it after releasing it: when the
    command has already ended, the EOF can follow our CLOSE and OpenSSH drops the whole
    connection ("ieof packet referred to nonexistent channel", paramiko #1115 / #1705); on
    the bastion that connection carries every node's tunnel. And ``_collect`` stops at the
    exit status even when the last output arrived between its checks (seen as a check
    output cut after its first line)."""
    import select

    import paramiko

    from kubebastion.errors import SSHError
    from kubebastion.ssh.shell import CommandResult, SSHShell, _text

    def drain(channel: paramiko.Channel, out: list[bytes], err: list[bytes]) -> None:
        while channel.recv_ready():
            out.append(channel.recv(65536))
        while channel.recv_stderr_ready():
            err.append(channel.recv_stderr(65536))

    def run(self: SSHShell, command: str, *, stdin: str | None = None,
            timeout: float | None = None) -> CommandResult:
        limit = timeout or self.command_timeout
        transport = self.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHError(f"{self.name}: connection lost")
        if stdin is None:
            command = f"exec </dev/null\n{command}"
        try:
            channel = transport.open_session(timeout=min(limit, 30.0))
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"{self.name}: connection lost: {exc or type(exc).__name__}"
                           ) from None
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + limit
        with channel:
            # Done when the exit status *and* the EOF (sent after the last output) are in;
            # the output is drained once more after both, so nothing read late is lost.
            while not (channel.exit_status_ready()
                       and (channel.eof_received or channel.closed)):
                drain(channel, out, err)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return CommandResult(None, _text(b"".join(out)), _text(b"".join(err)))
                select.select([channel], [], [], min(remaining, 1.0))
            drain(channel, out, err)
            status = channel.recv_exit_status()
        if status == -1 and not transport.is_active():
            raise SSHError(f"{self.name}: connection lost while the command ran")
        return CommandResult(status, _text(b"".join(out)), _text(b"".join(err)))

    SSHShell.run = run  # type: ignore[method-assign]


def parallel_close() -> None:
    from kubebastion.runtime import Run
    from kubebastion.ssh.connection import CONNECTION_NAME

    def close(self: Run) -> None:
        hosts = self.nornir.inventory.hosts
        bastion = self.cluster.bastion.name
        nodes = [h for name, h in hosts.items() if name != bastion]

        def close_host(host: Any) -> None:
            if CONNECTION_NAME in host.connections:
                host.close_connection(CONNECTION_NAME)

        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            list(pool.map(close_host, nodes))
        close_host(hosts[bastion])

    Run.close = close  # type: ignore[method-assign]


def bastion_first_close() -> None:
    """``Run.close`` ends the shared bastion transport first, then closes the rest. Closing
    node connections one by one while their tunnels are still up lets a node transport's
    last packet reach the bastion after that tunnel's CLOSE ("data packet referred to
    nonexistent channel"): OpenSSH then drops the bastion connection, with every tunnel on
    it. At the end of a run nothing uses the tunnels any more, so they can go all at once."""
    from kubebastion.runtime import Run
    from kubebastion.ssh.connection import CONNECTION_NAME

    original = Run.close

    def close(self: Run) -> None:
        bastion = self.nornir.inventory.hosts[self.cluster.bastion.name]
        plugin = bastion.connections.get(CONNECTION_NAME)
        connection = getattr(plugin, "connection", None)
        if connection is not None:
            connection.client.close()
        original(self)

    Run.close = close  # type: ignore[method-assign]


def lazy_init() -> None:
    """What a lazy kubebastion/__init__.py (PEP 562 ``__getattr__``) would cost at import:
    the package module is pre-registered empty, so importing ``kubebastion.runtime`` & co.
    no longer imports every step, deploy and kubespray module (jinja2, x509, ...)."""
    import types
    from pathlib import Path

    package = types.ModuleType("kubebastion")
    package.__path__ = [str(Path(__file__).resolve().parents[1] / "kubebastion")]
    sys.modules["kubebastion"] = package


VARIANTS: dict[str, Callable[[], None]] = {
    "lazy-init": lambda: None,  # handled in main, before kubebastion is imported
    "bastion-first-close": bastion_first_close,
    "clone-config": clone_config,
    "parallel-close": parallel_close,
    "safe-exec": safe_exec,
    "fast-exit": lambda: None,  # handled in main: os._exit once the work is done
}


def record_timeline(path: str, started: float) -> Callable[[], None]:
    """Log when each connection and each host's task started and ended (seconds since the
    interpreter started); returns the function that writes the log."""
    import kb_workload

    import kubebastion.ssh.connection as kc

    events: list[dict[str, Any]] = []
    lock = threading.Lock()

    def wrap(func: Callable[..., Any], kind: str, name_of: Callable[..., str]
             ) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                with lock:
                    events.append({"kind": kind, "name": name_of(*args, **kwargs),
                                   "start": t0 - started, "end": time.perf_counter() - started})
        return wrapper

    kc.connect = wrap(kc.connect, "connect", lambda endpoint, *a, **k: str(endpoint.hostname))
    for key, task in list(kb_workload.TASKS.items()):
        kb_workload.TASKS[key] = wrap(task, "task", lambda task, *a, **k: str(task.host.name))

    def write() -> None:
        with open(path, "w") as out:
            json.dump({"events": events, "exit": time.perf_counter() - started}, out)

    return write


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS))
    parser.add_argument("--cprofile", default="")
    parser.add_argument("--timeline", default="")
    parser.add_argument("workload_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    profilers: list[cProfile.Profile] = []
    lock = threading.Lock()
    if args.cprofile:
        def start_thread_profiler(*_: Any) -> None:
            profiler = cProfile.Profile(time.thread_time)
            with lock:
                profilers.append(profiler)
            sys.setprofile(None)
            profiler.enable()

        main_profiler = cProfile.Profile(time.thread_time)
        profilers.append(main_profiler)
        threading.setprofile(start_thread_profiler)
        main_profiler.enable()
    if "lazy-init" in args.variant:
        lazy_init()
    import kb_workload

    for variant in args.variant:
        VARIANTS[variant]()
    write_timeline = record_timeline(args.timeline, STARTED) if args.timeline else None
    sys.argv = [sys.argv[0], *[a for a in args.workload_args if a != "--"]]
    code = kb_workload.main()
    if write_timeline is not None:
        write_timeline()
    if "fast-exit" in args.variant:  # skip interpreter finalization (atexit, GC, teardown)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if args.cprofile:
        threading.setprofile(None)
        for profiler in profilers:
            profiler.disable()
        stats = pstats.Stats(profilers[0], stream=io.StringIO())
        for profiler in profilers[1:]:
            stats.add(profiler)
        stats.dump_stats(args.cprofile)
    return code


if __name__ == "__main__":
    sys.exit(main())
