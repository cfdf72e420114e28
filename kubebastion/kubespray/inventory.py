"""kubespray's inventory (v2.31 format) rendered from the cluster model, locally.

The result is a small folder, ``inventory/<cluster>/``: ``hosts.yaml`` (``all.hosts`` with
``ansible_host``/``ip``/``access_ip``; groups ``kube_control_plane``, ``etcd``,
``kube_node``, ``calico_rr`` and ``k8s_cluster`` made of the first two plus ``calico_rr``)
and ``group_vars/all/kubebastion.yml`` holding the inventory's ``kubespray_vars`` as given,
plus ``kube_apiserver_port`` and the SAN that ``api_port``/``api_address`` need (apivars).
kubespray's own role defaults supply every other variable, so nothing is copied from
``inventory/sample``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from kubebastion.atomic_file import replace_file
from kubebastion.cluster import Cluster
from kubebastion.errors import ConfigError, StepError
from kubebastion.kubespray.apivars import api_vars
from kubebastion.templating import render

HOSTS_FILE = "hosts.yaml"
GROUP_VARS_FILE = "group_vars/all/kubebastion.yml"

#: Variables that would switch off host key checking for ansible; we refuse them (kubespray's
#: ansible.cfg already does that by default, and undoing it is half of this step).
_HOST_KEY_VARS = ("ansible_host_key_checking", "ansible_ssh_host_key_checking")
_SSH_ARG_VARS = ("ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args")
_INSECURE_SSH_ARGS = ("stricthostkeychecking=no", "stricthostkeychecking=off",
                      "userknownhostsfile=/dev/null", "stricthostkeychecking=accept-new")


def yaml_scalar(value: str) -> str:
    """``value`` plain when YAML reads it back as that string, else double-quoted (a node
    named ``no`` or ``1e3`` must not become a boolean or a number)."""
    try:
        if yaml.safe_load(value) == value and value.strip() == value and value:
            return value
    except yaml.YAMLError:
        pass
    return json.dumps(value)


def inventory_dir(checkout_dir: str, cluster_name: str) -> str:
    """Where kubespray expects our inventory: ``<checkout>/inventory/<cluster>``."""
    return str(PurePosixPath(checkout_dir) / "inventory" / cluster_name)


def check_kubespray_vars(variables: Mapping[str, Any]) -> None:
    """Refuse pass-through variables that would turn host key checking off."""
    problems = []
    for key in _HOST_KEY_VARS:
        if key in variables and variables[key] not in (True, "true", "True", "yes"):
            problems.append(f"{key}: {variables[key]!r}")
    if "ansible_ssh_args" in variables:
        problems.append("ansible_ssh_args (it would replace the host key options "
                        "kubebastion passes)")
    for key in _SSH_ARG_VARS:
        value = str(variables.get(key, "")).lower().replace(" ", "")
        if any(bad in value for bad in _INSECURE_SSH_ARGS):
            problems.append(f"{key}: {variables[key]!r}")
    if problems:
        raise ConfigError("kubespray_vars would disable SSH host key checking, which "
                          "kubebastion keeps on for the playbook: remove "
                          + "; ".join(problems))


def render_kubespray_inventory(cluster: Cluster) -> dict[str, str]:
    """The inventory folder's files, keyed by path relative to ``inventory/<cluster>``."""
    check_kubespray_vars(cluster.kubespray_vars)
    nodes = cluster.nodes
    unknown = [n.name for n in nodes if not n.ip]
    if unknown:
        raise StepError(f"{', '.join(unknown)}'s ip is not known yet: those hosts are given by "
                        "name; set ip: in hosts.yaml, or let kubebastion read it from the "
                        "host (invoke kubespray)")
    groups = [
        ("kube_control_plane", [n.name for n in cluster.control_planes]),
        ("etcd", [n.name for n in cluster.etcd]),
        ("kube_node", [n.name for n in cluster.workers]),
        ("calico_rr", []),
    ]
    hosts = render("kubespray/hosts.yaml.j2", cluster_name=cluster.name, nodes=nodes,
                   groups=groups, scalar=yaml_scalar)
    variables = api_vars(cluster.api_port, cluster.api_address,
                         [a for n in cluster.control_planes for a in (n.ip, n.access_ip)],
                         cluster.kubespray_vars)
    variables_yaml = (yaml.safe_dump(variables, sort_keys=False, default_flow_style=False)
                      if variables else "{}")
    group_vars = render("kubespray/group_vars/all/kubebastion.yml.j2",
                        cluster_name=cluster.name,
                        kubespray_vars_yaml=variables_yaml.rstrip("\n"))
    return {HOSTS_FILE: hosts, GROUP_VARS_FILE: group_vars}


def write_inventory_locally(files: Mapping[str, str], folder: Path) -> list[Path]:
    """``--render-to``: write the rendered folder to ``folder``; returns the files written.
    Each file is replaced in one rename (never left half written). No backup or lock file
    beside it: ansible reads every file of an inventory folder, and would take a
    ``hosts.yaml.<backup>`` for one more inventory source."""
    written = []
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, text.encode(), mode=0o644)
        written.append(path)
    return written


def text_diff(old: str | None, new: str, path: str) -> str:
    """A unified diff of one file, ``""`` when unchanged (``old`` None: a new file)."""
    if old == new:
        return ""
    before = [] if old is None else old.splitlines(keepends=True)
    return "".join(difflib.unified_diff(
        before, new.splitlines(keepends=True),
        fromfile="/dev/null" if old is None else f"a{path}", tofile=f"b{path}"))
