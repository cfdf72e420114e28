"""kubebastion: kubespray behind a bastion, in one command.

The Nornir task functions are the public API: build your own Nornir, let
``prepare_nornir`` validate it and wire SSH through the bastion, then run any step::

    nr = InitNornir(config_file="nornir_config.yaml")
    cluster = prepare_nornir(nr)
    nr.filter(name=cluster.bastion.name).run(task=configure_nat, cluster=cluster)

``prepare_nornir`` writes what the tasks need into that Nornir object only (nothing
process-wide), so two runs in one process never share connections or locks. The whole
flow is ``with build_run(...) as run: kubebastion.deploy.deploy(run)`` (the ``with``
closes the run's connections). The task contract: docs/architecture.md. Names are
imported on first use (PEP 562), so a command that needs one step does not pay for all
of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Cluster": "kubebastion.cluster",
    "DeployOptions": "kubebastion.deploy",
    "DeployReport": "kubebastion.deploy",
    "KubeBastionError": "kubebastion.errors",
    "Run": "kubebastion.runtime",
    "build_run": "kubebastion.runtime",
    "prepare_nornir": "kubebastion.runtime",
    "check_host": "kubebastion.check",
    "configure_nat": "kubebastion.nat.task",
    "check_egress": "kubebastion.egress.task",
    "gather_bastion_egress": "kubebastion.egress.task",
    "prepare_kubespray": "kubebastion.kubespray.task",
    "run_kubespray_playbook": "kubebastion.kubespray.task",
    "install_admin_conf": "kubebastion.admin_conf",
    "fetch_kubeconfig": "kubebastion.kubeconfig.task",
    "verify_ready": "kubebastion.kubeconfig.verify",
    "remove_node": "kubebastion.day2.commands",
    "upgrade": "kubebastion.day2.commands",
    "reset_cluster": "kubebastion.day2.commands",
    "forget_node_host_key": "kubebastion.day2.task",
    "remove_kubeconfig_context": "kubebastion.day2.task",
    "forget_cluster_state": "kubebastion.day2.task",
}

__all__ = [
    "Cluster",
    "DeployOptions",
    "DeployReport",
    "KubeBastionError",
    "Run",
    "build_run",
    "check_egress",
    "check_host",
    "configure_nat",
    "fetch_kubeconfig",
    "forget_cluster_state",
    "forget_node_host_key",
    "gather_bastion_egress",
    "install_admin_conf",
    "prepare_kubespray",
    "prepare_nornir",
    "remove_kubeconfig_context",
    "remove_node",
    "reset_cluster",
    "run_kubespray_playbook",
    "upgrade",
    "verify_ready",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kubebastion' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from kubebastion.admin_conf import install_admin_conf
    from kubebastion.check import check_host
    from kubebastion.cluster import Cluster
    from kubebastion.day2.commands import remove_node, reset_cluster, upgrade
    from kubebastion.day2.task import (
        forget_cluster_state,
        forget_node_host_key,
        remove_kubeconfig_context,
    )
    from kubebastion.deploy import DeployOptions, DeployReport
    from kubebastion.egress.task import check_egress, gather_bastion_egress
    from kubebastion.errors import KubeBastionError
    from kubebastion.kubeconfig.task import fetch_kubeconfig
    from kubebastion.kubeconfig.verify import verify_ready
    from kubebastion.kubespray.task import prepare_kubespray, run_kubespray_playbook
    from kubebastion.nat.task import configure_nat
    from kubebastion.runtime import Run, build_run, prepare_nornir
