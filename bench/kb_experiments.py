"""kb_workload.py under a profiler or with a candidate kubebastion change applied in-process.

Used by the bench's profile phase to measure what a change to kubebastion would buy before
anyone edits kubebastion: each ``--variant`` changes one thing in this process only (the
repo is not touched), then runs kb_workload's ``main``::

    .venv/bin/python bench/kb_experiments.py --variant fast-exit -- --config X --workload A

The one variant left is the candidate the library has not taken: ``fast-exit``, ``os._exit``
once the results are printed (no interpreter finalization). The others were taken (a lazy
package ``__init__``, a cloned Fabric config per connection, an exec without a lone EOF,
the bastion's transport closed first) or no longer fit ``Run.close`` (``parallel-close``),
and are gone from here.

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
from typing import Any  # noqa: E402

#: Candidate changes, applied in this process only (``fast-exit`` is handled in ``main``).
VARIANTS = ("fast-exit",)


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
    parser.add_argument("--variant", action="append", default=[], choices=VARIANTS)
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
    import kb_workload

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
