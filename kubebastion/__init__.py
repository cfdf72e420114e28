"""kubebastion: kubespray behind a bastion, in one command.

The Nornir task functions are the public API: build your own Nornir, let
``prepare_nornir`` validate it and wire SSH through the bastion, then run any step::

    nr = InitNornir(config_file="nornir_config.yaml")
    cluster = prepare_nornir(nr)
    nr.filter(name=cluster.bastion.name).run(task=configure_nat, cluster=cluster)
"""

from kubebastion.cluster import Cluster
from kubebastion.deploy import DeployOptions, DeployReport, deploy
from kubebastion.errors import KubeBastionError
from kubebastion.runtime import Run, build_run, prepare_nornir
from kubebastion.steps.admin_conf import install_admin_conf
from kubebastion.steps.check import check_host
from kubebastion.steps.egress import check_egress, gather_bastion_facts
from kubebastion.steps.fetch_kubeconfig import fetch_kubeconfig
from kubebastion.steps.kubespray import prepare_kubespray, run_kubespray_playbook
from kubebastion.steps.nat import configure_nat

__version__ = "0.1.0"

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
    "deploy",
    "fetch_kubeconfig",
    "gather_bastion_facts",
    "install_admin_conf",
    "prepare_kubespray",
    "prepare_nornir",
    "run_kubespray_playbook",
]
