#!/usr/bin/env python3
"""Use kubebastion's tasks from your own Nornir run.

Usage: examples/nat_and_kubeconfig.py NORNIR_CONFIG [CONTEXT]

Builds Nornir the usual way, lets kubebastion validate the inventory and wire SSH through
the bastion, then runs two of its steps — NAT on the bastion and the kubeconfig fetch —
and prints what each changed.
"""

from __future__ import annotations

import sys

from nornir import InitNornir
from nornir.core.task import AggregatedResult

from kubebastion import configure_nat, fetch_kubeconfig, prepare_nornir


def report(name: str, results: AggregatedResult, host: str) -> bool:
    result = results[host][0]
    if results.failed:
        print(f"{name}: failed: {result.exception}")
        return False
    print(f"{name}: {'changed' if result.changed else 'no change'}")
    return True


def main(config_file: str, context: str) -> int:
    nr = InitNornir(config_file=config_file)
    try:
        cluster = prepare_nornir(nr)
        bastion = nr.filter(name=cluster.bastion.name)
        nat = bastion.run(task=configure_nat, cluster=cluster)
        if not report("nat", nat, cluster.bastion.name):
            return 1
        fetched = bastion.run(task=fetch_kubeconfig, cluster=cluster, context=context)
        if not report("fetch-kubeconfig", fetched, cluster.bastion.name):
            return 1
        return 0
    finally:
        nr.close_connections()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else "example"))
