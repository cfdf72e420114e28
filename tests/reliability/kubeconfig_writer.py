"""A process that merges one context into a local kubeconfig, the way ``fetch-kubeconfig
--local`` does (``merge_local``: locked, atomic, backed up), for the kill -9 trials.

    python -m tests.reliability.kubeconfig_writer PATH CONTEXT SERVER ADMIN_CONF [--calibrate]

It prints ``ready`` once imported, waits for a line on stdin (so the parent can start many
ahead), prints ``started`` (the parent times its kill from there), writes, then prints
``done``. ``--calibrate`` first
times the read-and-merge alone and prints ``merge=<s> total=<s>``: the parent aims some
kills at the write itself, after the merge.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kubebastion.kubeconfig.task import bastion_entry, merge_local, merged_text


def main(argv: list[str]) -> int:
    path, context, server, admin_conf = Path(argv[0]), argv[1], argv[2], Path(argv[3])
    incoming = bastion_entry(admin_conf.read_text(), context, server)
    print("ready", flush=True)
    sys.stdin.readline()
    print("started", flush=True)  # the parent times its kill from here
    started = time.monotonic()
    merge = 0.0
    if "--calibrate" in argv:  # the merge alone, warmed up once
        current = path.read_text() if path.exists() else ""
        merged_text(incoming, False)(current, str(path))
        started = time.monotonic()
        merged_text(incoming, False)(current, str(path))
        merge = time.monotonic() - started
        started = time.monotonic()
    merge_local(path, incoming, switch=False, dry_run=False)
    total = time.monotonic() - started
    print(f"done merge={merge:.6f} total={total:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
