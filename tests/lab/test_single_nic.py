"""`invoke nat` on a single-NIC bastion, for real (issue 12, item 6).

The common cloud bastion has one NIC, on the private subnet, and a 1:1 NAT public address
in front of it (OpenStack floating IP, AWS Elastic IP): its uplink *is* the private
interface. This module builds a lab of its own shaped like that (``lab.up(...,
single_nic=True)``): the emulated internet sits on the private subnet as its router
(198.18.1.2) and, like a cloud edge, answers only the bastion's address. The bastion's
FORWARD policy is DROP (ufw, docker), so the FORWARD rules are exercised too.

Shown here: before NAT no node gets out, forwarding alone is not enough either (the edge
drops the nodes' own addresses); after `invoke nat` every node gets out and the internet
sees the bastion's address; traffic between two private hosts routed through the bastion
keeps its source address (not masqueraded); a second and third run change nothing;
`--remove` takes egress away again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

import lab
from kubebastion.egress.diagnose import FORWARDING_OFF, NO_MASQUERADE
from kubebastion.nat.plan import NFT_TABLE
from lab.lock import held, session_lock
from lab.topology import BASTION_PRIVATE_ADDRESS, EDGE_ADDRESS
from tests.lab import helpers
from tests.lab.helpers import REPO
from tests.labgate import require_lab

pytestmark = pytest.mark.lab

INET_URL = "http://198.19.0.1:80/"
BASE = os.environ.get("KUBEBASTION_LAB_PREFIX") or "kbt"
PREFIX = BASE[:9] + "s"  # a lab of its own, beside the session's two-NIC one
PARAMS: dict[str, Any] = {
    "name_prefix": PREFIX,
    "control_planes": 1,
    "workers": 2,
    "user": f"{PREFIX}lab",
    "state_dir": lab.DEFAULT_STATE_DIR / f"pytest-{PREFIX}",
    "single_nic": True,
}
ECHO_PORT = 8080


def invoke(state: lab.LabState, *args: str) -> subprocess.CompletedProcess[str]:
    return helpers.invoke(*args, "--config", str(state.nornir_config))


def nat(state: lab.LabState, *args: str) -> dict[str, Any]:
    result = invoke(state, "nat", "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {r["host"]: r for r in json.loads(result.stdout)["hosts"]}
    return dict(rows["bastion"])


def egress_details(state: lab.LabState) -> dict[str, str]:
    result = invoke(state, "check", "--egress", "--json")
    return {r["host"]: r["detail"] for r in json.loads(result.stdout)["egress"]}


def sources(state: lab.LabState) -> dict[str, str]:
    """What the internet host says each node's address is ("" when unreachable)."""
    seen = {}
    for node in state.nodes:
        got = lab.http_get_from(node.namespace, INET_URL)
        seen[node.name] = got.stdout.strip() if got.returncode == 0 else ""
    return seen


def on_bastion(state: lab.LabState, script: str) -> str:
    fresh = lab.load_state(state.state_dir) or state
    return lab.host_exec(fresh, "bastion", ["sh", "-c", script], check=True).stdout


@pytest.fixture(scope="module")
def single_nic() -> Iterator[lab.LabState]:
    require_lab()
    with ExitStack() as stack:
        stack.enter_context(held(session_lock(PREFIX), timeout=270))
        lab.down(PARAMS["name_prefix"], PARAMS["user"], PARAMS["state_dir"])
        stack.callback(lab.down, PARAMS["name_prefix"], PARAMS["user"], PARAMS["state_dir"])
        state = lab.up(**PARAMS)
        on_bastion(state, "iptables -P FORWARD DROP")
        yield state


def test_up_again_keeps_the_single_nic_lab_as_it_is(single_nic: lab.LabState) -> None:
    again = lab.up(**PARAMS)
    assert again.single_nic and lab.load_state(single_nic.state_dir).single_nic  # type: ignore[union-attr]
    assert [h.sshd_pid for h in again.hosts] == [h.sshd_pid for h in single_nic.hosts]


def test_the_bastion_has_one_nic_and_reaches_the_internet_through_it(
    single_nic: lab.LabState,
) -> None:
    route = on_bastion(single_nic, "ip -4 route show default")
    assert route.split()[:5] == ["default", "via", EDGE_ADDRESS, "dev", "priv0"]
    assert "wan0" not in on_bastion(single_nic, "ip -o link show")
    seen = lab.http_get_from(single_nic.bastion.namespace, INET_URL)
    assert seen.stdout.strip() == BASTION_PRIVATE_ADDRESS


def test_before_nat_no_node_gets_out_not_even_with_forwarding_on(
    single_nic: lab.LabState,
) -> None:
    assert set(egress_details(single_nic).values()) - {""} == {FORWARDING_OFF}
    on_bastion(single_nic, "sysctl -q -w net.ipv4.ip_forward=1; iptables -P FORWARD ACCEPT")
    try:
        assert not any(sources(single_nic).values())  # the edge drops the nodes' addresses
        assert set(egress_details(single_nic).values()) - {""} == {NO_MASQUERADE}
    finally:
        on_bastion(single_nic, "sysctl -q -w net.ipv4.ip_forward=0; iptables -P FORWARD DROP")


def test_nat_on_the_private_interface_lets_every_node_out_as_the_bastion(
    single_nic: lab.LabState,
) -> None:
    row = nat(single_nic)
    assert row["status"] == "changed", row
    assert row["data"]["uplink"] == "priv0" and row["data"]["single_nic"] is True
    assert row["data"]["forward_jump"] is True
    assert "ip daddr != 198.18.1.0/24" in row["detail"]
    assert sources(single_nic) == {n.name: BASTION_PRIVATE_ADDRESS for n in single_nic.nodes}
    assert set(egress_details(single_nic).values()) == {""}


def test_nat_again_changes_nothing(single_nic: lab.LabState) -> None:
    table = on_bastion(single_nic, f"nft list table ip {NFT_TABLE}")
    for _ in range(2):
        row = nat(single_nic)
        assert row["status"] == "ok" and row["data"]["summary"].startswith("no change"), row
    assert on_bastion(single_nic, f"nft list table ip {NFT_TABLE}") == table


@pytest.fixture
def echo_on_control_plane(single_nic: lab.LabState) -> Iterator[str]:
    """The lab's echo-the-caller service on k8s-m0's private address; yields its URL. Run
    inside the host's own namespaces (its /etc/hosts and resolv.conf: the server's
    reverse lookup of its address must not wait for a nameserver no lab host reaches)."""
    node = lab.load_state(single_nic.state_dir).host("k8s-m0")  # type: ignore[union-attr]
    url = f"http://{node.private_address}:{ECHO_PORT}/"
    script = REPO / "lab" / "inet_service.py"
    proc = subprocess.Popen(
        ["nsenter", "-t", str(node.sshd_pid), "-n", "-m", "-u", "--", "/usr/bin/python3",
         "-I", str(script), node.private_address, str(ECHO_PORT), "/tmp/kubebastion-echo.pid"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while lab.http_get_from(node.namespace, url, timeout=1).returncode != 0:
            assert time.monotonic() < deadline, "echo service did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_traffic_between_private_hosts_through_the_bastion_is_not_masqueraded(
    single_nic: lab.LabState, echo_on_control_plane: str
) -> None:
    worker = single_nic.host("k8s-w0")
    target = single_nic.host("k8s-m0").private_address
    route = ["ip", "route", "replace", f"{target}/32", "via", BASTION_PRIVATE_ADDRESS]
    lab.exec_in(worker.namespace, route, check=True)
    # kubebastion opens FORWARD only for traffic leaving the private network; a firewall
    # that lets private hosts talk through the bastion is the owner's choice: open here.
    on_bastion(single_nic, "iptables -P FORWARD ACCEPT")
    try:
        path = lab.exec_in(worker.namespace, ["ip", "route", "get", target], check=True)
        assert f"via {BASTION_PRIVATE_ADDRESS}" in path.stdout  # really through the bastion
        before = on_bastion(single_nic, "nstat -az IpForwDatagrams")
        seen = lab.http_get_from(worker.namespace, echo_on_control_plane)
        after = on_bastion(single_nic, "nstat -az IpForwDatagrams")
    finally:
        lab.exec_in(worker.namespace, ["ip", "route", "del", f"{target}/32"], check=False)
        on_bastion(single_nic, "iptables -P FORWARD DROP")
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.strip() == worker.private_address  # its own address, not the bastion's
    assert _forwarded(after) > _forwarded(before)


def _forwarded(nstat: str) -> int:
    for line in nstat.splitlines():
        fields = line.split()
        if fields and fields[0] == "IpForwDatagrams":
            return int(fields[1])
    raise AssertionError(f"no IpForwDatagrams in {nstat!r}")


def test_remove_takes_egress_away_again(single_nic: lab.LabState) -> None:
    row = nat(single_nic, "--remove")
    assert row["status"] == "changed", row
    assert not any(sources(single_nic).values())
    assert nat(single_nic, "--remove")["status"] == "ok"
