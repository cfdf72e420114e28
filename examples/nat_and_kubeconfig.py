#!/usr/bin/env python3
"""Use kubebastion's tasks from your own Nornir run.

Usage: examples/nat_and_kubeconfig.py NORNIR_CONFIG [CONTEXT [READY_TIMEOUT]]

Builds Nornir the usual way, lets kubebastion validate the inventory and wire SSH through
the bastion, then runs two of its steps as ``invoke deploy`` runs them — NAT on the
bastion, and the kubeconfig fetch, which ends by waiting (up to READY_TIMEOUT seconds,
default 120) for every node to be Ready — and prints what each changed, then the nodes
that are Ready. Exits 1 when a step fails, a node that stayed not Ready included.
"""

from __future__ import annotations

import sys

from nornir import InitNornir
from nornir.core.task import AggregatedResult

from kubebastion import configure_nat, fetch_kubeconfig, prepare_nornir


def report(name: str, results: AggregatedResult, host: str) -> bool:
    result = results[host][0]
    if results.failed:
        # A task raises, or returns a failed result whose summary says why.
        summary = getattr(result.result, "summary", "")
        why = str(result.exception) if result.exception else summary or "failed"
        print(f"{name}: failed: {why}")
        return False
    print(f"{name}: {'changed' if result.changed else 'no change'}")
    return True


def main(config_file: str, context: str, ready_timeout: float) -> int:
    nr = InitNornir(config_file=config_file)
    try:
        cluster = prepare_nornir(nr)
        host = cluster.bastion.name
        bastion = nr.filter(name=host)
        nat = bastion.run(task=configure_nat, cluster=cluster)
        if not report("nat", nat, host):
            return 1
        fetched = bastion.run(task=fetch_kubeconfig, cluster=cluster, context=context,
                              ready_timeout=ready_timeout)
        if not report("fetch-kubeconfig", fetched, host):
            return 1
        ready = fetched[host][0].result.ready  # what the API said: every node Ready
        print(f"ready: {', '.join(ready.health.ready)}")
        return 0
    finally:
        nr.close_connections()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3, 4):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "example",
                  float(sys.argv[3]) if len(sys.argv) > 3 else 120.0))
