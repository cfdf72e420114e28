"""The built-in lab, tested for real: namespaces, sshd, routes, NAT failure, lifecycle.

The first tests check the address plan and generated files as plain data (no root).
The ``lab``-marked tests use the session lab from ``lab_env`` (tests/lab/conftest.py) and
plain OpenSSH clients, ``ip`` and ``curl``; nothing is mocked. Tests that change the lab
undo their change; the lifecycle tests that rebuild or take the lab down are marked
``lab_destructive`` (run at the end of the session) and leave the lab up again.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import lab
from kubebastion.kubespray.settings import DirectorySource, default_wheelhouse, settings_from
from lab import files
from lab.accounts import sudoers_path
from lab.hosts import mounts_missing
from lab.lock import held, session_lock
from lab.netns import exec_in, link_exists, list_namespaces, pid_alive
from lab.topology import (
    IFNAMSIZ_MAX,
    LAB_SPACE,
    MAX_CONTROL_PLANES,
    MAX_WORKERS,
    OPERATOR_SPACE,
    HostPlan,
    LabError,
    Topology,
    choose_operator_network,
    namespace_pattern,
    operator_network_candidates,
)

URL = "http://198.19.0.1/"

# --- the plan, as data (no root needed) ------------------------------------------------


def test_single_nic_plan_has_no_uplink_and_its_edge_on_the_private_network() -> None:
    from lab.topology import BASTION_UPLINK_ADDRESS, EDGE_ADDRESS, PRIVATE_CIDR

    two, one = Topology("kbl", 1, MAX_WORKERS), Topology("kbl", 1, MAX_WORKERS, single_nic=True)
    assert BASTION_UPLINK_ADDRESS in two.bastion.addresses
    assert one.bastion.addresses == (one.bastion_operator_address, "198.18.1.1")
    assert (two.egress_address, one.egress_address) == (BASTION_UPLINK_ADDRESS, "198.18.1.1")
    edge = ipaddress.IPv4Address(EDGE_ADDRESS)
    assert edge in ipaddress.IPv4Network(PRIVATE_CIDR) and edge in LAB_SPACE
    taken = {a for h in one.hosts for a in h.addresses}
    assert EDGE_ADDRESS not in taken  # not a host's, not even in a full-size lab


@pytest.mark.parametrize("prefix", ["kbl", "kbt12", "abcdefghij"])
def test_full_size_plan_stays_in_the_lab_range_with_valid_names(prefix: str) -> None:
    topo = Topology(prefix, 1, 60)
    addresses = [a for h in topo.hosts for a in h.addresses]
    assert len(addresses) == len(set(addresses))
    assert all(ipaddress.IPv4Address(a) in LAB_SPACE for a in addresses)
    assert [h.name for h in topo.hosts][:3] == ["bastion", "k8s-m0", "k8s-w0"]
    assert topo.namespace("k8s-w59") == f"{prefix}-k8s-w59"
    assert topo.nodes[-1].private_address == "198.18.1.159"
    # Interface names (IFNAMSIZ): the root link carries the prefix, the rest are fixed.
    ifnames = [topo.operator_iface] + [n.bridge_port or "" for n in topo.nodes]
    assert all(0 < len(name) <= IFNAMSIZ_MAX for name in ifnames)
    biggest = Topology(prefix, MAX_CONTROL_PLANES, MAX_WORKERS)
    assert max(len(n.bridge_port or "") for n in biggest.nodes) <= IFNAMSIZ_MAX
    pattern = namespace_pattern(prefix)
    assert all(pattern.match(ns) for ns in topo.namespaces)
    assert not pattern.match(f"{prefix}-something-else")
    assert not pattern.match(f"{prefix}x-bastion")


def test_operator_network_is_a_slash_30_per_lab_in_198_18_0_0_24() -> None:
    default = Topology("kbl", 1, 1)
    assert (default.operator_network, default.operator_address) == ("198.18.0.0/30", "198.18.0.1")
    assert default.bastion.ssh_address == default.bastion_operator_address == "198.18.0.2"
    other = Topology("kbt2", 1, 1, "198.18.0.12/30")
    assert (other.operator_address, other.bastion.ssh_address) == ("198.18.0.13", "198.18.0.14")
    assert other.bastion.addresses == ("198.18.0.14", "198.18.1.1", "198.18.2.2")
    for bad in ("198.18.0.2/30", "198.18.0.0/29", "198.18.1.0/30", "10.0.0.0/30", "x"):
        with pytest.raises(LabError):
            Topology("kbt2", 1, 1, bad)


def test_operator_network_allocation_order() -> None:
    every = operator_network_candidates("kbl")
    assert len(every) == 64 and len(set(every)) == 64
    assert all(ipaddress.IPv4Network(n).subnet_of(OPERATOR_SPACE) for n in every)
    # The default lab keeps 198.18.0.0/30; other labs take it only when nothing else is free.
    assert every[:2] == ["198.18.0.0/30", "198.18.0.4/30"]
    assert operator_network_candidates("kbt")[0] == "198.18.0.4/30"
    assert operator_network_candidates("kbt")[-1] == "198.18.0.0/30"
    assert operator_network_candidates("kbt", "198.18.0.40/30")[0] == "198.18.0.40/30"

    def net(text: str) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(text)

    assert choose_operator_network("kbl", []) == "198.18.0.0/30"
    used = [net("192.0.2.0/24"), net("127.0.0.0/8"), net("198.18.0.0/30"), net("198.18.0.4/30")]
    assert choose_operator_network("kbl", used) == "198.18.0.8/30"
    assert choose_operator_network("kbt", used) == "198.18.0.8/30"
    assert choose_operator_network("kbt", used, preferred="198.18.0.4/30") == "198.18.0.8/30"
    assert choose_operator_network("kbt", used, preferred="198.18.0.20/30") == "198.18.0.20/30"
    # Something else on the machine using a wider net in that space blocks all of it.
    assert choose_operator_network("kbt", [net("198.18.0.0/26")]) == "198.18.0.64/30"
    assert choose_operator_network("kbt", [net("198.18.0.0/24")]) is None


@pytest.mark.parametrize(
    ("prefix", "cps", "workers"),
    [("KBL", 1, 1), ("a-b", 1, 1), ("toolongprefix", 1, 1), ("kbl", 0, 1), ("kbl", 1, 999)],
)
def test_plan_rejects_bad_parameters(prefix: str, cps: int, workers: int) -> None:
    with pytest.raises(LabError):
        Topology(prefix, cps, workers)


def test_generated_inventory_follows_docs_inventory_md() -> None:
    topo = Topology("kbt", 1, 2)
    sd = Path("/srv/lab-state")
    hosts = yaml.safe_load(files.hosts_yaml(topo))
    assert hosts["bastion"] == {
        "hostname": "198.18.0.2",
        "groups": ["bastion"],
        "data": {"private_address": "198.18.1.1"},
    }
    assert hosts["k8s-m0"] == {"hostname": "198.18.1.10", "groups": ["control_plane"]}
    assert hosts["k8s-w1"] == {"hostname": "198.18.1.101", "groups": ["workers"]}
    assert yaml.safe_load(files.groups_yaml()) == {
        "bastion": {},
        "nodes": {"data": {"jump_host": "bastion"}},
        "control_plane": {"groups": ["nodes"]},
        "etcd": {"groups": ["nodes"]},
        "workers": {"groups": ["nodes"]},
    }
    defaults = yaml.safe_load(files.defaults_yaml("kblab", sd))
    assert defaults == {
        "username": "kblab",
        "port": 22,
        "data": {
            "cluster_name": "lab",
            "api_port": 6443,
            "private_cidr": "198.18.1.0/24",
            "egress_targets": ["198.19.0.1:80"],
            "kubespray": {
                "source": str(files.KUBESPRAY_STANDIN),
                "wheelhouse": str(default_wheelhouse()),
                "ready_timeout": 60,
            },
            "kubespray_vars": {"supplementary_addresses_in_ssl_keys": ["198.18.1.10"]},
        },
        "connection_options": {
            "fabric": {
                "extras": {
                    "known_hosts": "/srv/lab-state/known_hosts",
                    "private_key": "/srv/lab-state/id_ed25519",
                }
            }
        },
    }
    config = yaml.safe_load(files.nornir_config_yaml(topo, sd))
    assert config["inventory"]["options"]["host_file"] == "/srv/lab-state/inventory/hosts.yaml"
    assert config["runner"] == {"plugin": "threaded", "options": {"num_workers": 4}}
    assert config["logging"] == {"log_file": "/srv/lab-state/nornir.log"}


def test_lab_defaults_parse_as_kubespray_settings(tmp_path: Path) -> None:
    """The inventory defaults are deploy-ready: kubebastion's own kubespray settings parser
    (which rejects unknown keys) accepts them, from any folder, without overrides."""
    defaults = yaml.safe_load(files.defaults_yaml("kblab", tmp_path))
    settings = settings_from(defaults["data"]["kubespray"], tmp_path / "elsewhere")
    assert settings.source == DirectorySource(files.KUBESPRAY_STANDIN)
    assert (files.KUBESPRAY_STANDIN / "cluster.yml").is_file()
    assert settings.wheelhouse == default_wheelhouse()
    assert settings.ready_timeout == 60.0
    sans = defaults["data"]["kubespray_vars"]["supplementary_addresses_in_ssl_keys"]
    assert sans == [Topology("kbl", 1, 0).nodes[0].private_address]


def test_client_files_follow_the_operator_network() -> None:
    topo = Topology("kbt2", 1, 1, "198.18.0.8/30")
    hosts = yaml.safe_load(files.hosts_yaml(topo))
    assert hosts["bastion"]["hostname"] == "198.18.0.10"
    keys = {"bastion": "ssh-ed25519 B", "k8s-m0": "ssh-ed25519 M", "k8s-w0": "ssh-ed25519 W"}
    assert files.known_hosts_text(topo, keys).splitlines()[:2] == [
        "198.18.0.10 ssh-ed25519 B",
        "198.18.1.1 ssh-ed25519 B",
    ]
    config = files.ssh_config_text(topo, "kbt2lab", Path("/srv/s"))
    assert "Host bastion 198.18.0.10\n    HostName 198.18.0.10\n" in config
    assert "ProxyJump kbt2lab@198.18.0.10" in config
    assert "198.18.0.2" not in config


def test_known_hosts_lists_bastion_on_both_sides_and_nodes_privately() -> None:
    topo = Topology("kbt", 1, 1)
    keys = {
        "bastion": "ssh-ed25519 AAAAB",
        "k8s-m0": "ssh-ed25519 AAAAM",
        "k8s-w0": "ssh-ed25519 W",
    }
    assert files.known_hosts_text(topo, keys).splitlines() == [
        "198.18.0.2 ssh-ed25519 AAAAB",
        "198.18.1.1 ssh-ed25519 AAAAB",
        "198.18.1.10 ssh-ed25519 AAAAM",
        "198.18.1.100 ssh-ed25519 W",
    ]


# --- the running lab --------------------------------------------------------------------

lab_test = pytest.mark.lab


def current(state: lab.LabState) -> lab.LabState:
    fresh = lab.load_state(state.state_dir)
    assert fresh is not None, "lab.json missing: the lab is not up"
    return fresh


def ssh(
    state: lab.LabState,
    host: str,
    command: str,
    config: Path,
    known_hosts: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Plain OpenSSH: strict host keys against the lab's known_hosts, the lab key, and
    ProxyJump through the bastion for nodes. ``config`` carries the same options to the
    jump hop (ssh passes ``-F`` on to it, not ``-o``/``-i``)."""
    target = state.host(host)
    argv = [
        "ssh", "-F", str(config),
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts or state.known_hosts}",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
        "-i", str(state.private_key),
        "-l", state.user,
    ]  # fmt: skip
    if target.role != "bastion":
        argv += ["-J", f"{state.user}@{state.bastion.ssh_address}"]
    argv += [target.ssh_address, command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def client_config(lab_env: lab.LabState, tmp_path: Path) -> Path:
    """A minimal ssh client config of our own (the jump hop reads it too)."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        "Host *\n"
        f"    IdentityFile {lab_env.private_key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {lab_env.known_hosts}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    StrictHostKeyChecking yes\n"
        "    BatchMode yes\n"
    )
    return cfg


def accepted(host: lab.HostState) -> int:
    return host.sshd_log.read_text().count("Accepted publickey")


def tcp_connects(ns: str, address: str, port: int, timeout: float = 1.0) -> bool:
    probe = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout({timeout})\n"
        f"sys.exit(s.connect_ex(({address!r}, {port})))\n"
    )
    return exec_in(ns, ["/usr/bin/python3", "-c", probe], timeout=timeout + 10).returncode == 0


@lab_test
def test_every_host_accepts_the_lab_key_over_ssh(
    lab_env: lab.LabState, client_config: Path
) -> None:
    state = current(lab_env)
    for host in state.hosts:
        before = accepted(host)
        r = ssh(state, host.name, "hostname; id -un; sudo -n true && echo sudo-ok", client_config)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [host.name, state.user, "sudo-ok"]
        assert accepted(host) == before + 1
    # The generated ssh_config works as is, with host aliases.
    r = subprocess.run(
        ["ssh", "-F", str(state.ssh_config), "k8s-w1", "hostname"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (r.returncode, r.stdout.strip()) == (0, "k8s-w1"), r.stderr


@lab_test
def test_changed_host_key_is_refused(lab_env: lab.LabState, client_config: Path) -> None:
    state = current(lab_env)
    old = state.host("k8s-w0").host_key_fingerprint
    replaced = lab.replace_host_key(state, "k8s-w0")
    try:
        assert replaced.host_key_fingerprint != old
        r = ssh(state, "k8s-w0", "true", client_config)
        assert r.returncode == 255
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr
        assert "Host key verification failed" in r.stderr
    finally:
        lab.write_client_files(state)  # re-trust the new key
    assert ssh(state, "k8s-w0", "true", client_config).returncode == 0


@lab_test
def test_operator_has_no_path_to_the_private_network(lab_env: lab.LabState) -> None:
    op = lab_env.operator_iface
    # The root namespace has exactly one lab route: the /30 to the bastion.
    lab_routes = subprocess.run(
        ["ip", "-o", "-4", "route", "show", "dev", op], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [r.split()[0] for r in lab_routes] == [lab_env.operator_network]
    assert ipaddress.IPv4Network(lab_env.operator_network).subnet_of(OPERATOR_SPACE)
    all_routes = subprocess.run(
        ["ip", "-o", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    assert "198.18.1." not in all_routes and "198.19." not in all_routes
    node = lab_env.nodes[0].private_address
    got = subprocess.run(["ip", "-o", "route", "get", node], capture_output=True, text=True).stdout
    assert f"dev {op}" not in got
    # Even forced onto the bastion link, a node's sshd cannot be reached.
    s = socket.socket()
    s.settimeout(1.5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, op.encode())
    with pytest.raises(OSError) as err:
        s.connect((node, 22))
    s.close()
    assert isinstance(err.value, TimeoutError) or err.value.errno in (
        errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT,
    )  # fmt: skip


@lab_test
def test_no_lab_namespace_routes_out_of_the_machine(lab_env: lab.LabState) -> None:
    def routes(ns: str) -> dict[str, str]:
        out = exec_in(ns, ["ip", "-o", "-4", "route"], check=True).stdout.splitlines()
        return {line.split()[0]: line for line in out}

    # inet: only its link to the bastion; no default route, nothing back to 198.18.1.0/24.
    assert list(routes(lab_env.inet.namespace)) == ["198.18.2.0/24"]
    bastion = routes(lab_env.bastion.namespace)
    assert sorted(bastion) == sorted(
        [lab_env.operator_network, "198.18.1.0/24", "198.18.2.0/24", "default"]
    )
    assert bastion["default"].startswith("default via 198.18.2.1 dev wan0")
    for node in lab_env.nodes:
        node_routes = routes(node.namespace)
        assert sorted(node_routes) == ["198.18.1.0/24", "default"]
        assert node_routes["default"].startswith("default via 198.18.1.1 dev eth0")
    assert all(ipaddress.IPv4Address(a) in LAB_SPACE for h in lab_env.hosts for a in h.addresses)


@lab_test
def test_inet_service_answers_with_the_bastion_uplink_address(lab_env: lab.LabState) -> None:
    r = lab.http_get_from(lab_env.bastion.namespace, URL)
    assert (r.returncode, r.stdout) == (0, "198.18.2.2\n"), r.stderr


@lab_test
def test_nodes_reach_the_internet_only_after_forwarding_and_masquerade(
    lab_env: lab.LabState,
) -> None:
    bastion, node = lab_env.bastion.namespace, lab_env.nodes[-1].namespace
    assert exec_in(bastion, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "0"
    assert "masquerade" not in exec_in(bastion, ["nft", "list", "ruleset"]).stdout

    def fetch() -> tuple[subprocess.CompletedProcess[str], float]:
        t0 = time.monotonic()
        return lab.http_get_from(node, URL, timeout=1.5), time.monotonic() - t0

    r, took = fetch()  # the classic failure, bounded by a short timeout
    assert r.returncode != 0 and took < 6, (r.stdout, took)
    try:
        exec_in(bastion, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], check=True)
        r, took = fetch()  # forwarded, but inet has no route back to the private network
        assert r.returncode != 0 and took < 6
        nat = (
            "table ip kbtest {\n chain post {\n  type nat hook postrouting priority srcnat;\n"
            '  oifname "wan0" masquerade\n }\n}\n'
        )
        exec_in(bastion, ["nft", "-f", "-"], input=nat, check=True)
        r, _ = fetch()
        assert (r.returncode, r.stdout) == (0, "198.18.2.2\n"), r.stderr
    finally:
        lab.reset_bastion_egress(lab_env)
    assert exec_in(bastion, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "0"
    assert exec_in(bastion, ["nft", "list", "ruleset"]).stdout.strip() == ""


@lab_test
def test_hosts_have_private_etc_and_names(lab_env: lab.LabState, client_config: Path) -> None:
    state = current(lab_env)
    node = state.nodes[0]
    probe = "99-kbt-probe.conf"
    r = ssh(
        state,
        node.name,
        f"sudo -n sh -c 'echo net.ipv4.ip_forward=0 > /etc/sysctl.d/{probe}' && "
        "hostname && getent hosts bastion k8s-w1 && ls -A /etc/systemd/system | wc -l",
        client_config,
    )
    try:
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == node.name
        assert lines[1].split() == ["198.18.1.1", "bastion"]
        assert lines[2].split() == ["198.18.1.101", "k8s-w1"]
        assert lines[3] == "0"
        assert (node.host_dir / "etc-sysctl.d" / probe).exists()
        assert not Path("/etc/sysctl.d", probe).exists()
        seen = lab.host_exec(state, node.name, ["cat", f"/etc/sysctl.d/{probe}"], check=True)
        assert seen.stdout == "net.ipv4.ip_forward=0\n"
    finally:
        (node.host_dir / "etc-sysctl.d" / probe).unlink(missing_ok=True)


@lab_test
def test_nodes_look_systemd_managed_in_their_own_mount_namespace_only(
    lab_env: lab.LabState, client_config: Path
) -> None:
    """What ansible-core 2.18's service_mgr fact reads (lab/hosts.py says why), and ping,
    both needed by real kubespray's preinstall assertions."""
    state = current(lab_env)
    probe = (
        "cat /proc/1/comm; if [ -d /run/systemd/system ]; then echo canary; else echo none; "
        "fi; command -v systemctl >/dev/null && echo systemctl; "
        "ping -c1 -W5 198.18.1.1 >/dev/null && echo pong"
    )
    for node in state.nodes:
        r = ssh(state, node.name, probe, client_config)
        assert r.stdout.split() == ["systemd", "canary", "systemctl", "pong"], r.stderr
        assert mounts_missing(node, _plan(state, node.name)) == []
    r = ssh(state, "bastion", probe, client_config)
    assert r.stdout.split()[1:] == ["none", "systemctl", "pong"], r.stderr
    # The machine itself: no lab tmpfs on /run/systemd, PID 1's name untouched.
    root_mounts = Path("/proc/self/mountinfo").read_text()
    assert "kubebastion-lab" not in root_mounts
    assert " /proc/1/comm " not in root_mounts
    # An sshd started without the node mounts (the bastion's, seen as a node) is caught,
    # so `up` restarts the sshd of a lab built before them.
    assert mounts_missing(state.bastion, _plan(state, "k8s-w0")) == [
        "/proc/1/comm", "/run/systemd"]


def _plan(state: lab.LabState, name: str) -> HostPlan:
    return next(p for p in state.topology.hosts if p.name == name)


@lab_test
@pytest.mark.filterwarnings("ignore::nornir.core.exceptions.ConflictingConfigurationWarning")
def test_nornir_loads_the_generated_inventory(lab_env: lab.LabState) -> None:
    from nornir import InitNornir

    nr = InitNornir(config_file=str(lab_env.nornir_config))
    inv = nr.inventory
    assert list(inv.hosts) == ["bastion", "k8s-m0", "k8s-w0", "k8s-w1"]
    assert inv.hosts["bastion"].hostname == lab_env.bastion.ssh_address
    assert lab_env.bastion.ssh_address == lab_env.topology.bastion_operator_address
    assert inv.hosts["bastion"]["private_address"] == "198.18.1.1"
    assert inv.hosts["k8s-m0"]["jump_host"] == "bastion"
    assert [g.name for g in inv.hosts["k8s-w0"].groups] == ["workers"]
    assert inv.hosts["k8s-w0"].username == lab_env.user
    extras = inv.hosts["k8s-w0"].get_connection_parameters("fabric").extras
    assert extras == {
        "known_hosts": str(lab_env.known_hosts),
        "private_key": str(lab_env.private_key),
    }
    assert nr.config.runner.options["num_workers"] == 4


@lab_test
def test_lab_json_and_known_hosts_describe_the_real_hosts(
    lab_env: lab.LabState, lab_params: dict[str, Any]
) -> None:
    state = current(lab_env)
    prefix = lab_params["name_prefix"]
    data = json.loads(state.lab_json.read_text())
    assert (data["prefix"], data["user"]) == (prefix, lab_params["user"])
    assert data["operator_network"] == state.operator_network
    assert data["operator_address"] == state.topology.operator_address
    assert data["inet"] == {
        "namespace": f"{prefix}-inet", "address": "198.19.0.1", "port": 80,
        "pid": state.inet.pid,
    }  # fmt: skip
    for h in data["hosts"]:
        assert set(h) >= {"name", "role", "namespace", "addresses", "ssh_port", "sshd_pid",
                          "host_dir", "host_key_fingerprint"}  # fmt: skip
        assert pid_alive(h["sshd_pid"])
        keygen = subprocess.run(
            ["ssh-keygen", "-lf", f"{h['host_dir']}/ssh_host_ed25519_key.pub"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert keygen.stdout.split()[1] == h["host_key_fingerprint"]
    for address in (state.bastion.ssh_address, "198.18.1.1", "198.18.1.10", "198.18.1.100"):
        found = subprocess.run(["ssh-keygen", "-F", address, "-f", str(state.known_hosts)],
                               capture_output=True, text=True)  # fmt: skip
        assert found.returncode == 0, address
    assert lab.status(prefix, state.state_dir)["healthy"] is True


@lab_test
def test_link_down_cuts_a_node_off_and_link_up_restores_it(lab_env: lab.LabState) -> None:
    bastion, node = lab_env.bastion.namespace, lab_env.host("k8s-w0")
    assert tcp_connects(bastion, node.private_address, 22)
    lab.link_down(lab_env, "k8s-w0")
    try:
        assert not tcp_connects(bastion, node.private_address, 22)
    finally:
        lab.link_up(lab_env, "k8s-w0")
    assert tcp_connects(bastion, node.private_address, 22, timeout=3)


@lab_test
def test_sudo_password_mode_is_switched_in_place(
    lab_env: lab.LabState, lab_params: dict[str, Any], client_config: Path
) -> None:
    before = {h.name: h.sshd_pid for h in current(lab_env).hosts}
    password = "kbt-Secret-1"
    try:
        state = lab.up(**lab_params, sudo_password=password)
        assert state.sudo_password_required
        assert {h.name: h.sshd_pid for h in state.hosts} == before  # no rebuild
        assert ssh(state, "bastion", "sudo -n true", client_config).returncode != 0
        r = ssh(state, "bastion", f"echo {password} | sudo -S -p '' id -u", client_config)
        assert (r.returncode, r.stdout.strip()) == (0, "0"), r.stderr
    finally:
        state = lab.up(**lab_params)
    assert not state.sudo_password_required
    assert ssh(state, "bastion", "sudo -n true", client_config).returncode == 0


def _snapshot(state: lab.LabState) -> dict[str, object]:
    watched = [
        state.lab_json,
        state.known_hosts,
        state.nornir_config,
        state.ssh_config,
        state.private_key,
        *state.inventory_dir.iterdir(),
        sudoers_path(state.user),
        Path("/etc/shadow"),
        Path("/etc/passwd"),
    ]
    for h in state.hosts:
        watched += [
            h.sshd_config,
            h.host_key,
            h.host_dir / "hosts",
            h.host_dir / "home" / state.user / ".ssh" / "authorized_keys",
        ]
    return {
        "files": {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in watched},
        "pids": [h.sshd_pid for h in state.hosts] + [state.inet.pid],
    }  # fmt: skip


@lab_test
def test_up_again_changes_nothing_and_is_fast(
    lab_env: lab.LabState, lab_params: dict[str, Any]
) -> None:
    before = _snapshot(current(lab_env))
    t0 = time.monotonic()
    state = lab.up(**lab_params)
    took = time.monotonic() - t0
    assert _snapshot(state) == before
    assert took < 5, f"idempotent up took {took:.2f}s"


@lab_test
def test_up_repairs_dead_processes_and_downed_links(
    lab_env: lab.LabState, lab_params: dict[str, Any], client_config: Path
) -> None:
    state = current(lab_env)
    victim = state.host("k8s-w1")
    m0_pid = state.host("k8s-m0").sshd_pid
    os.kill(victim.sshd_pid, signal.SIGKILL)
    os.kill(state.inet.pid, signal.SIGKILL)
    lab.link_down(state, "k8s-w0")
    state.host("k8s-m0").sshd_pid = os.getpid()  # a stale pid in lab.json: sshd itself is fine
    state.save()
    repaired = lab.up(**lab_params)
    assert repaired.host("k8s-w1").sshd_pid != victim.sshd_pid
    assert repaired.host("k8s-m0").sshd_pid == m0_pid  # adopted from its PidFile, not restarted
    for name in ("k8s-w0", "k8s-w1"):
        assert ssh(repaired, name, "hostname", client_config).stdout.strip() == name
    r = lab.http_get_from(repaired.bastion.namespace, URL)
    assert r.stdout == "198.18.2.2\n"


def _hostname_over_ssh(state: lab.LabState, host: str) -> str:
    """``hostname`` through the lab's own generated ssh_config (ProxyJump via its bastion)."""
    r = subprocess.run(
        ["ssh", "-F", str(state.ssh_config), host, "hostname"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, f"{state.prefix} {host}: {r.stderr}"
    return r.stdout.strip()


@lab_test
def test_a_second_lab_runs_beside_this_one_and_goes_down_alone(
    lab_env: lab.LabState, lab_params: dict[str, Any]
) -> None:
    """Two labs at once (another prefix, its own /30, user and state_dir): both answer SSH
    through their own bastion, and taking the second one down leaves this one working."""
    first = current(lab_env)
    base = lab_params["name_prefix"][:9]
    prefix = next(base + c for c in "sz" if base + c != lab_params["name_prefix"])
    params: dict[str, Any] = {
        "name_prefix": prefix,
        "control_planes": 1,
        "workers": 1,
        "user": f"{prefix}lab",
        "state_dir": Path(lab_params["state_dir"]).with_name(f"pytest-{prefix}"),
    }
    with held(session_lock(prefix), timeout=60):
        lab.down(prefix, params["user"], params["state_dir"])  # leftovers of an earlier run
        # Sharing the running lab's user or state_dir is refused before anything is touched.
        with pytest.raises(LabError, match="already serves the running lab"):
            lab.up(**{**params, "user": first.user})
        with pytest.raises(LabError, match="holds the running lab"):
            lab.up(**{**params, "state_dir": first.state_dir})
        try:
            t0 = time.monotonic()
            second = lab.up(**params)
            print(f"second lab {prefix} (1+1) up in {time.monotonic() - t0:.2f}s")
            nets = {first.operator_network, second.operator_network}
            assert len(nets) == 2
            assert all(ipaddress.IPv4Network(n).subnet_of(OPERATOR_SPACE) for n in nets)
            assert second.bastion.ssh_address == second.topology.bastion_operator_address
            assert second.bastion.ssh_address != first.bastion.ssh_address
            for state in (first, second):
                for host in state.hosts:
                    assert _hostname_over_ssh(state, host.name) == host.name
            assert lab.status(prefix, second.state_dir)["healthy"] is True
        finally:
            summary = lab.down(prefix, params["user"], params["state_dir"])
    assert len(summary["namespaces_removed"]) == 4
    assert summary["users_removed"] == [params["user"]]
    assert not link_exists(f"{prefix}-op")
    # The session lab is untouched: link, user, /run/sshd for new logins, every host.
    assert lab.status(first.prefix, first.state_dir)["healthy"] is True
    assert Path("/run/sshd").is_dir()
    for host in first.hosts:
        assert _hostname_over_ssh(first, host.name) == host.name


@lab_test
@pytest.mark.lab_destructive
def test_up_rebuilds_a_half_built_lab(
    lab_env: lab.LabState, lab_params: dict[str, Any], client_config: Path
) -> None:
    state = current(lab_env)
    prefix = lab_params["name_prefix"]
    old_pids = [h.sshd_pid for h in state.hosts]
    state.lab_json.unlink()  # as if `up` crashed before finishing
    stray = f"{prefix}-k8s-w7"
    subprocess.run(["ip", "netns", "add", stray], check=True)  # a stray leftover
    rebuilt = lab.up(**lab_params)
    assert not any(pid_alive(p) and p in [h.sshd_pid for h in rebuilt.hosts] for p in old_pids)
    assert stray not in list_namespaces()
    assert lab.status(prefix, rebuilt.state_dir)["healthy"] is True
    assert ssh(rebuilt, "k8s-m0", "hostname", client_config).stdout.strip() == "k8s-m0"


@lab_test
@pytest.mark.lab_destructive
def test_down_twice_leaves_nothing_then_up_again(
    lab_env: lab.LabState, lab_params: dict[str, Any]
) -> None:
    state = current(lab_env)
    prefix, user = lab_params["name_prefix"], lab_params["user"]
    pids = [h.sshd_pid for h in state.hosts] + [state.inet.pid]
    try:
        first = lab.down(prefix, user, lab_params["state_dir"])
        second = lab.down(prefix, user, lab_params["state_dir"])
        assert len(first["namespaces_removed"]) == 5 and first["users_removed"] == [user]
        assert second["namespaces_removed"] == [] and second["processes_killed"] == 0
        pattern = namespace_pattern(prefix)
        assert not [ns for ns in list_namespaces() if pattern.match(ns)]
        assert not link_exists(f"{prefix}-op")
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
        assert not sudoers_path(user).exists()
        assert not (state.state_dir / "hosts").exists()
        assert not state.lab_json.exists()
        assert not any(pid_alive(p) for p in pids)
        assert lab.status(prefix, state.state_dir)["healthy"] is False
    finally:
        lab.up(**lab_params)  # later tests (other modules) share this lab
