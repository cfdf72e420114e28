"""kubebastion's side of the benchmark: one workload over every inventory host, one process.

Run like the peers, as its own process, so interpreter start-up and imports are counted::

    .venv/bin/python bench/kb_workload.py --config lab/state/nornir_config.yaml --workload A

A: the ``check`` step itself (``kubebastion.check.check_host``: one batched exec of
   whoami, ``sudo -n true``, ``python3 --version`` and /etc/os-release per host).
B: read a root-only file with sudo (``remote.read_file(..., sudo=True)``, as
   fetch-kubeconfig reads admin.conf).
C: five commands in a row per host over its one connection (``remote.run`` five times).

Exits 1 when any host failed. ``--timings`` prints where the wall time went (JSON on stderr).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()
STARTED_EPOCH = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

# Import kubebastion as a regular install would: from the repo, package __init__ included.
# (The .venv's editable install resolves ``kubebastion`` as a namespace package when the
# current directory is not the repo root, which would skip kubebastion/__init__.py.)
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from nornir.core.task import Result, Task  # noqa: E402
from workloads import FIVE_COMMANDS, SECRET_FILE  # noqa: E402

from kubebastion.check import check_host  # noqa: E402
from kubebastion.runtime import build_run  # noqa: E402
from kubebastion.ssh import remote  # noqa: E402
from kubebastion.ssh.shell import shell_for  # noqa: E402

IMPORTED = time.perf_counter()


def read_secret(task: Task) -> Result:
    data = remote.read_file(shell_for(task), SECRET_FILE, sudo=True)
    if data is None:
        raise RuntimeError(f"{task.host.name}: {SECRET_FILE} is missing")
    return Result(host=task.host, result=len(data))


def five_commands(task: Task) -> Result:
    shell = shell_for(task)
    outputs = [remote.run(shell, command).stdout for command in FIVE_COMMANDS]
    return Result(host=task.host, result=len(outputs))


TASKS: dict[str, Any] = {"A": check_host, "B": read_secret, "C": five_commands}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--workload", choices=sorted(TASKS), required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--timings", action="store_true")
    args = parser.parse_args()
    run = build_run(args.config, num_workers=args.workers)
    built = time.perf_counter()
    try:
        results = run.nornir.run(task=TASKS[args.workload], name=f"bench-{args.workload}")
        ran = time.perf_counter()
    finally:
        run.close()
    closed = time.perf_counter()
    failed = sorted(results.failed_hosts)
    for name in failed:
        exc = results[name][0].exception
        why = f"{type(exc).__name__}: {exc}" if exc is not None else results[name][0].diff
        print(f"{name}: {why}", file=sys.stderr)
    if args.timings:
        print(json.dumps({
            "imports": IMPORTED - STARTED, "build_run": built - IMPORTED,
            "run": ran - built, "close": closed - ran, "hosts": len(results),
            "started_epoch": STARTED_EPOCH, "closed_epoch": time.time() - (time.perf_counter()
                                                                         - closed),
        }), file=sys.stderr)
    print(f"{len(results) - len(failed)}/{len(results)} hosts ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
