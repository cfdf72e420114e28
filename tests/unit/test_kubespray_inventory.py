"""The rendered kubespray inventory against kubespray's documented v2.31 format.

kubespray's docs/ansible/inventory.md: groups ``kube_control_plane``, ``etcd``,
``kube_node`` (control planes only when also workers), ``k8s_cluster`` = children
``kube_control_plane`` + ``kube_node`` (+ ``calico_rr``); host vars ``ansible_host``,
``ip`` (bind address), ``access_ip`` (address others use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubebastion.cluster import Cluster, RawHost, build_cluster
from kubebastion.errors import ConfigError, InventoryError
from kubebastion.kubespray.inventory import (
    GROUP_VARS_FILE,
    HOSTS_FILE,
    inventory_dir,
    render_kubespray_inventory,
    text_diff,
    write_inventory_locally,
    yaml_scalar,
)

DOCUMENTED_GROUPS = {"kube_control_plane", "etcd", "kube_node", "k8s_cluster", "calico_rr"}


def raw(name: str, address: str, *groups: str, **data: Any) -> RawHost:
    groups_set = set(groups)
    if groups_set & {"control_plane", "etcd", "workers"}:
        groups_set.add("nodes")
        data.setdefault("jump_host", "bastion")
    return RawHost(name, address, "ubuntu", 22, frozenset(groups_set), data)


def cluster_of(control_planes: int, workers: int, **data: Any) -> Cluster:
    hosts = [raw("bastion", "198.18.0.2", "bastion", private_address="198.18.1.1")]
    hosts += [raw(f"k8s-m{i}", f"198.18.1.{10 + i}", "control_plane")
              for i in range(control_planes)]
    hosts += [raw(f"k8s-w{i}", f"198.18.1.{100 + i}", "workers") for i in range(workers)]
    return build_cluster(hosts, {"cluster_name": "demo", **data})


def group_hosts(inventory: dict[str, Any], group: str) -> list[str]:
    return list((inventory["all"]["children"][group].get("hosts") or {}).keys())


def resolve(inventory: dict[str, Any], group: str) -> set[str]:
    """Hosts of a group the way ansible resolves them (children included)."""
    body = inventory["all"]["children"][group] or {}
    found = set((body.get("hosts") or {}).keys())
    for child in (body.get("children") or {}):
        found |= resolve(inventory, child)
    return found


@pytest.mark.parametrize(("control_planes", "workers"), [(1, 2), (3, 3), (3, 0)],
                         ids=["one-control-plane", "three-control-planes", "no-workers"])
def test_inventory_has_kubesprays_documented_shape(control_planes: int, workers: int) -> None:
    cluster = cluster_of(control_planes, workers)
    inventory = yaml.safe_load(render_kubespray_inventory(cluster)[HOSTS_FILE])

    assert set(inventory) == {"all"}
    assert set(inventory["all"]["children"]) == DOCUMENTED_GROUPS
    masters = [f"k8s-m{i}" for i in range(control_planes)]
    workers_ = [f"k8s-w{i}" for i in range(workers)]
    assert group_hosts(inventory, "kube_control_plane") == masters
    assert group_hosts(inventory, "etcd") == masters  # etcd defaults to the control planes
    assert group_hosts(inventory, "kube_node") == workers_
    assert group_hosts(inventory, "calico_rr") == []
    assert set(inventory["all"]["children"]["k8s_cluster"]["children"]) == {
        "kube_control_plane", "kube_node", "calico_rr"}
    assert resolve(inventory, "k8s_cluster") == set(masters) | set(workers_)
    assert len(resolve(inventory, "etcd")) % 2 == 1
    for node in cluster.nodes:
        assert inventory["all"]["hosts"][node.name] == {
            "ansible_host": node.address, "ip": node.ip, "access_ip": node.access_ip,
            "ansible_user": "ubuntu",
        }


def test_three_control_planes_exact_text() -> None:
    text = render_kubespray_inventory(cluster_of(3, 1))[HOSTS_FILE]
    assert "    k8s-m2:\n      ansible_host: 198.18.1.12\n      ip: 198.18.1.12\n" in text
    assert ("    kube_control_plane:\n      hosts:\n        k8s-m0:\n        k8s-m1:\n"
            "        k8s-m2:\n") in text
    assert "    calico_rr:\n      hosts: {}\n" in text
    assert text.endswith("    k8s_cluster:\n      children:\n        kube_control_plane:\n"
                         "        kube_node:\n        calico_rr:\n")


def test_ip_access_ip_port_and_control_plane_also_worker() -> None:
    hosts = [
        raw("bastion", "198.18.0.2", "bastion"),
        raw("cp", "198.18.1.10", "control_plane", "workers", ip="198.18.1.10",
            access_ip="198.18.3.10"),
        RawHost("w", "198.18.1.20", "core", 2222, frozenset({"workers", "nodes"}),
                {"jump_host": "bastion"}),
    ]
    cluster = build_cluster(hosts, {"private_cidr": "198.18.0.0/16"})
    inventory = yaml.safe_load(render_kubespray_inventory(cluster)[HOSTS_FILE])
    assert inventory["all"]["hosts"]["cp"]["access_ip"] == "198.18.3.10"
    assert inventory["all"]["hosts"]["w"] == {
        "ansible_host": "198.18.1.20", "ip": "198.18.1.20", "access_ip": "198.18.1.20",
        "ansible_user": "core", "ansible_port": 2222}
    assert group_hosts(inventory, "kube_node") == ["cp", "w"]


def test_explicit_etcd_group() -> None:
    hosts = [raw("bastion", "198.18.0.2", "bastion"),
             raw("m0", "198.18.1.10", "control_plane"),
             raw("e0", "198.18.1.20", "etcd"), raw("e1", "198.18.1.21", "etcd"),
             raw("e2", "198.18.1.22", "etcd"), raw("w0", "198.18.1.30", "workers")]
    inventory = yaml.safe_load(render_kubespray_inventory(build_cluster(hosts, {}))[HOSTS_FILE])
    assert group_hosts(inventory, "etcd") == ["e0", "e1", "e2"]
    assert "e0" not in resolve(inventory, "k8s_cluster")


def test_kubespray_vars_pass_through_to_group_vars_all() -> None:
    variables = {"supplementary_addresses_in_ssl_keys": ["198.18.0.2", "api.example.test"],
                 "kube_network_plugin": "calico", "lab_fail_on_host": "k8s-w0",
                 "enable_nodelocaldns": False}
    files = render_kubespray_inventory(cluster_of(1, 1, kubespray_vars=variables))
    assert list(files) == [HOSTS_FILE, GROUP_VARS_FILE]
    assert GROUP_VARS_FILE == "group_vars/all/kubebastion.yml"
    assert yaml.safe_load(files[GROUP_VARS_FILE]) == {"kube_apiserver_port": 6443, **variables}
    assert files[GROUP_VARS_FILE].startswith("# kubespray variables for cluster demo")


def test_no_kubespray_vars_leaves_only_the_api_port() -> None:
    files = render_kubespray_inventory(cluster_of(1, 0))
    assert yaml.safe_load(files[GROUP_VARS_FILE]) == {"kube_apiserver_port": 6443}


@pytest.mark.parametrize("variables", [
    {"ansible_host_key_checking": False},
    {"ansible_ssh_host_key_checking": "false"},
    {"ansible_ssh_args": "-o ControlMaster=auto"},
    {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"},
    {"ansible_ssh_extra_args": "-o UserKnownHostsFile=/dev/null"},
], ids=["host-key-checking", "ssh-host-key-checking", "ssh-args", "common-args", "extra-args"])
def test_variables_that_disable_host_key_checking_are_refused(
        variables: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="host key checking"):
        render_kubespray_inventory(cluster_of(1, 1, kubespray_vars=variables))


@pytest.mark.parametrize(("value", "rendered"), [
    ("k8s-m0", "k8s-m0"), ("198.18.1.10", "198.18.1.10"), ("2001:db8::10", "2001:db8::10"),
    ("no", '"no"'), ("on", '"on"'), ("1.5", '"1.5"'), ("123", '"123"'), ("null", '"null"'),
], ids=["name", "ipv4", "ipv6", "no", "on", "float", "int", "null"])
def test_yaml_scalars_stay_strings(value: str, rendered: str) -> None:
    assert yaml_scalar(value) == rendered
    assert yaml.safe_load(f"k: {yaml_scalar(value)}") == {"k": value}


def test_node_names_that_look_like_yaml_keywords() -> None:
    hosts = [raw("bastion", "198.18.0.2", "bastion"), raw("no", "198.18.1.10", "control_plane"),
             raw("123", "198.18.1.20", "workers")]
    inventory = yaml.safe_load(render_kubespray_inventory(build_cluster(hosts, {}))[HOSTS_FILE])
    assert list(inventory["all"]["hosts"]) == ["no", "123"]
    assert group_hosts(inventory, "kube_control_plane") == ["no"]


def test_rendering_is_stable_and_diffs_are_empty_when_equal() -> None:
    cluster = cluster_of(3, 2)
    first = render_kubespray_inventory(cluster)
    assert render_kubespray_inventory(cluster) == first
    assert text_diff(first[HOSTS_FILE], first[HOSTS_FILE], "/x") == ""
    new_file = text_diff(None, "a: 1\n", "/x/hosts.yaml")
    assert new_file.startswith("--- /dev/null\n+++ b/x/hosts.yaml\n")
    changed = text_diff("a: 1\n", "a: 2\n", "/x")
    assert "-a: 1\n+a: 2\n" in changed


def test_render_to_folder_and_remote_location(tmp_path: Path) -> None:
    written = write_inventory_locally(render_kubespray_inventory(cluster_of(1, 1)), tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "hosts.yaml", "group_vars/all/kubebastion.yml"]
    assert inventory_dir("/home/u/kubespray", "demo") == "/home/u/kubespray/inventory/demo"
    # Again over an older render: replaced, readable, and nothing else left in the folder.
    (tmp_path / "hosts.yaml").write_text("old\n")
    (tmp_path / "hosts.yaml").chmod(0o600)
    again = write_inventory_locally(render_kubespray_inventory(cluster_of(1, 1)), tmp_path)
    assert again == written and (tmp_path / "hosts.yaml").read_text().startswith("#")
    assert (tmp_path / "hosts.yaml").stat().st_mode & 0o777 == 0o644
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                  if p.is_file()) == ["group_vars/all/kubebastion.yml", "hosts.yaml"]


def rendered_vars(**data: Any) -> dict[str, Any]:
    variables: dict[str, Any] = yaml.safe_load(
        render_kubespray_inventory(cluster_of(1, 1, **data))[GROUP_VARS_FILE])
    return variables


@pytest.mark.parametrize(("data", "expected"), [
    ({"api_port": 8443}, {"kube_apiserver_port": 8443}),
    ({"api_address": "198.18.1.10"}, {"kube_apiserver_port": 6443}),  # the control plane
    ({"api_address": "198.18.1.250"},
     {"kube_apiserver_port": 6443, "supplementary_addresses_in_ssl_keys": ["198.18.1.250"]}),
    ({"api_address": "api.example.test", "api_port": 8443,
      "kubespray_vars": {"supplementary_addresses_in_ssl_keys": ["203.0.113.10"]}},
     {"kube_apiserver_port": 8443,
      "supplementary_addresses_in_ssl_keys": ["203.0.113.10", "api.example.test"]}),
    ({"api_address": "198.18.1.250",
      "kubespray_vars": {"loadbalancer_apiserver": {"address": "198.18.1.250", "port": 6443}}},
     {"kube_apiserver_port": 6443,
      "loadbalancer_apiserver": {"address": "198.18.1.250", "port": 6443}}),
    ({"api_port": 8443, "kubespray_vars": {"kube_apiserver_port": 8443}},
     {"kube_apiserver_port": 8443}),
], ids=["port", "address-is-a-control-plane", "vip", "lb-name-and-port", "managed-lb",
        "same-port-twice"])
def test_api_port_and_address_reach_kubespray(data: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    assert rendered_vars(**data) == expected


@pytest.mark.parametrize(("data", "message"), [
    ({"kubespray_vars": {"kube_apiserver_port": 8443}},
     "kubespray_vars.kube_apiserver_port 8443 disagrees with api_port 6443: set api_port only"),
    ({"kubespray_vars": {"loadbalancer_apiserver": {"address": "198.18.1.250"}}},
     "kubespray_vars.loadbalancer_apiserver ('198.18.1.250') is not api_address (None)"),
    ({"api_address": "198.18.1.250",
      "kubespray_vars": {"loadbalancer_apiserver": {"address": "198.18.1.250", "port": 8383}}},
     "kubespray_vars.loadbalancer_apiserver.port 8383 is not api_port 6443"),
    ({"api_address": "198.18.1.250",
      "kubespray_vars": {"supplementary_addresses_in_ssl_keys": "{{ my_sans }}"}},
     "kubespray_vars.supplementary_addresses_in_ssl_keys must be a list"),
], ids=["port-disagrees", "lb-without-api-address", "lb-port", "sans-not-a-list"])
def test_api_settings_that_disagree_with_kubespray_vars_are_refused(
        data: dict[str, Any], message: str) -> None:
    with pytest.raises(InventoryError) as info:
        cluster_of(1, 1, **data)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems
