"""kubebastion: kubespray behind a bastion, in one command.

The Nornir task functions are the public API: build your own Nornir, let
``prepare_nornir`` validate it and wire SSH through the bastion, then run any step::

    nr = InitNornir(config_file="nornir_config.yaml")
    cluster = prepare_nornir(nr)
    nr.filter(name=cluster.bastion.name).run(task=configure_nat, cluster=cluster)

The whole flow is ``kubebastion.deploy.deploy(build_run(...))``. Names are imported on
first use (PEP 562), so a command that needs one step does not pay for all of them.
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
    "check_host": "kubebastion.steps.check",
    "configure_nat": "kubebastion.steps.nat",
    "check_egress": "kubebastion.steps.egress",
    "gather_bastion_facts": "kubebastion.steps.egress",
    "prepare_kubespray": "kubebastion.steps.kubespray",
    "run_kubespray_playbook": "kubebastion.steps.kubespray",
    "install_admin_conf": "kubebastion.steps.admin_conf",
    "fetch_kubeconfig": "kubebastion.steps.fetch_kubeconfig",
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
    "gather_bastion_facts",
    "install_admin_conf",
    "prepare_kubespray",
    "prepare_nornir",
    "run_kubespray_playbook",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kubebastion' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from kubebastion.cluster import Cluster
    from kubebastion.deploy import DeployOptions, DeployReport
    from kubebastion.errors import KubeBastionError
    from kubebastion.runtime import Run, build_run, prepare_nornir
    from kubebastion.steps.admin_conf import install_admin_conf
    from kubebastion.steps.check import check_host
    from kubebastion.steps.egress import check_egress, gather_bastion_facts
    from kubebastion.steps.fetch_kubeconfig import fetch_kubeconfig
    from kubebastion.steps.kubespray import prepare_kubespray, run_kubespray_playbook
    from kubebastion.steps.nat import configure_nat
