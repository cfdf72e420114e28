"""The egress check against the lab, for real: before NAT every node fails with the
bastion-does-not-forward diagnosis; after `invoke nat` every node reaches the inet service,
which sees the bastion's uplink address; each other diagnosis is provoked for real,
including a node whose resolver is broken (a name that does not resolve is told apart
from a name that resolves and then does not connect).

The lab machine shows no DMI strings, so the lab bastion is "bare metal or unknown" and
every fix named here is the generic one; the cloud ones are unit-tested on captured DMI
strings (tests/unit/test_cloud.py).

The lab is shared with other modules: this one starts by removing kubebastion's NAT (and
checks the lab's "before" state) and ends by removing it again.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import lab
from kubebastion.cloud import GENERIC
from kubebastion.egress.diagnose import FORWARDING_OFF, NO_DEFAULT_ROUTE, NO_MASQUERADE
from kubebastion.egress.task import run_egress_check
from kubebastion.report import FAILED, OK, HostOutcome
from kubebastion.runtime import build_run
from tests.lab.helpers import invoke

pytestmark = pytest.mark.lab

INET_URL = "http://198.19.0.1:80/"
UPLINK_ADDRESS = "198.18.2.2"


def egress(state: lab.LabState, config: Path | None = None) -> dict[str, HostOutcome]:
    run = build_run(config or state.nornir_config)
    try:
        return {row.host: row for row in run_egress_check(run)}
    finally:
        run.close()


def node_rows(rows: dict[str, HostOutcome], state: lab.LabState) -> list[HostOutcome]:
    return [rows[node.name] for node in state.nodes]


@pytest.fixture(scope="module")
def lab_clean(lab_env: lab.LabState) -> Iterator[lab.LabState]:
    result = invoke("nat", "--remove", "--config", str(lab_env.nornir_config))
    assert result.returncode == 0, result.stdout + result.stderr
    yield lab_env
    result = invoke("nat", "--remove", "--config", str(lab_env.nornir_config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_before_nat_every_node_fails_because_the_bastion_does_not_forward(
    lab_clean: lab.LabState,
) -> None:
    rows = egress(lab_clean)
    bastion = rows["bastion"]
    assert bastion.status == OK
    assert bastion.data["ip_forward"] == 0 and bastion.data["masquerade"] is False
    assert bastion.data["private_address"] == "198.18.1.1"
    assert bastion.data["provider"] == GENERIC.name
    for row in node_rows(rows, lab_clean):
        assert (row.status, row.detail) == (FAILED, FORWARDING_OFF), row
        assert row.data["gateway"] == "198.18.1.1"
        assert row.data["reached"] == "0/1"


def test_invoke_check_egress_fails_with_the_diagnosis_and_a_hint(lab_clean: lab.LabState) -> None:
    result = invoke("check", "--egress", "--config", str(lab_clean.nornir_config))
    assert result.returncode == 1
    assert FORWARDING_OFF in result.stdout
    assert "hint: `invoke nat`" in result.stdout
    for node in lab_clean.nodes:
        assert node.name in result.stderr  # the exit message names every failed node
    machine = invoke("check", "--egress", "--json", "--config", str(lab_clean.nornir_config))
    rows = {r["host"]: r for r in json.loads(machine.stdout)["egress"]}
    assert {rows[n.name]["detail"] for n in lab_clean.nodes} == {FORWARDING_OFF}


def test_forwarding_without_masquerade_is_diagnosed(lab_clean: lab.LabState) -> None:
    ns = lab_clean.bastion.namespace
    lab.exec_in(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True)
    try:
        rows = egress(lab_clean)
    finally:
        lab.exec_in(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"], check=True)
    assert rows["bastion"].data["ip_forward"] == 1
    for row in node_rows(rows, lab_clean):
        assert (row.status, row.detail) == (FAILED, NO_MASQUERADE), row


def test_after_nat_every_node_reaches_the_inet_service_as_the_uplink_address(
    lab_clean: lab.LabState,
) -> None:
    result = invoke("nat", "--config", str(lab_clean.nornir_config))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = egress(lab_clean)
    assert rows["bastion"].data["masquerade"] is True
    for row in node_rows(rows, lab_clean):
        assert row.status == OK, row
        assert row.data["reached"] == "1/1"
    for node in lab_clean.nodes:
        seen = lab.http_get_from(node.namespace, INET_URL)
        assert seen.returncode == 0, seen.stderr
        assert UPLINK_ADDRESS in seen.stdout and node.private_address not in seen.stdout
    cli = invoke("check", "--egress", "--json", "--config", str(lab_clean.nornir_config))
    assert cli.returncode == 0, cli.stdout + cli.stderr


def test_node_without_default_route_is_diagnosed(lab_clean: lab.LabState) -> None:
    node = lab_clean.nodes[-1]
    lab.exec_in(node.namespace, ["ip", "route", "del", "default"], check=True)
    try:
        row = egress(lab_clean)[node.name]
    finally:
        lab.exec_in(
            node.namespace, ["ip", "route", "add", "default", "via", "198.18.1.1"], check=True
        )
    assert (row.status, row.detail) == (FAILED, f"{NO_DEFAULT_ROUTE}; fix: {GENERIC.route}")


def test_node_routing_elsewhere_is_diagnosed(lab_clean: lab.LabState) -> None:
    node = lab_clean.nodes[0]
    lab.exec_in(
        node.namespace, ["ip", "route", "replace", "default", "via", "198.18.1.254"], check=True
    )
    try:
        rows = egress(lab_clean)
    finally:
        lab.exec_in(
            node.namespace, ["ip", "route", "replace", "default", "via", "198.18.1.1"], check=True
        )
    row = rows[node.name]
    assert (row.status, row.detail) == (
        FAILED, f"default route not via the bastion (198.18.1.254); fix: {GENERIC.route}")
    others = [r for r in node_rows(rows, lab_clean) if r.host != node.name]
    assert all(r.status == OK for r in others)


#: How a connect fails while the internet link is down: a timeout, or EHOSTUNREACH when
#: ARP gives up before the probe's timeout (seen on a loaded machine). Either way the
#: target is unreachable; the diagnosis is the same.
LINK_DOWN = r"\((timed out|No route to host)\)"


def test_unreachable_target_is_diagnosed(lab_clean: lab.LabState) -> None:
    lab.link_down(lab_clean, "inet")
    try:
        rows = egress(lab_clean)
    finally:
        lab.link_up(lab_clean, "inet")
    for row in node_rows(rows, lab_clean):
        assert row.status == FAILED
        assert re.fullmatch(
            f"target unreachable: 198\\.19\\.0\\.1:80 {LINK_DOWN}; "
            f"fix: {re.escape(GENERIC.forwarding)}", row.detail), row
    assert all(r.status == OK for r in node_rows(egress(lab_clean), lab_clean))


# --- names: a broken resolver apart from a failed connection (issue 12, item 8) ------------

NAMED_TARGETS = ["internet:80", "198.19.0.1:80"]  # "internet" is in every lab /etc/hosts
BROKEN_RESOLV = ("# a node whose resolver is gone: systemd-resolved's stub, not running\n"
                 "nameserver 127.0.0.53\noptions timeout:1 attempts:1\n")


@pytest.fixture
def named_targets(lab_clean: lab.LabState, tmp_path: Path) -> Path:
    """A copy of the lab inventory whose egress targets are a name and an address."""
    shutil.copytree(lab_clean.inventory_dir, tmp_path / "inventory")
    defaults_file = tmp_path / "inventory" / "defaults.yaml"
    defaults = yaml.safe_load(defaults_file.read_text())
    defaults.setdefault("data", {})["egress_targets"] = NAMED_TARGETS
    defaults_file.write_text(yaml.safe_dump(defaults))
    return lab.config_beside(lab_clean, tmp_path)


@pytest.fixture
def broken_resolver(lab_clean: lab.LabState) -> Iterator[lab.HostState]:
    """The last node loses name resolution: "internet" leaves its own /etc/hosts and its
    /etc/resolv.conf points at a resolver that is not there. Both files are per-host bind
    mounts (lab/hosts.py), rewritten in place so the mounts keep showing them; the
    machine's own files are never touched."""
    node = lab_clean.nodes[-1]
    files = {name: node.host_dir / name for name in ("hosts", "resolv.conf")}
    saved = {name: path.read_text() for name, path in files.items()}
    hosts = "".join(line for line in saved["hosts"].splitlines(keepends=True)
                    if not line.rstrip().endswith("internet"))
    for name, text in (("hosts", hosts), ("resolv.conf", BROKEN_RESOLV)):
        with files[name].open("r+") as fh:  # in place: a bind mount follows the inode
            fh.write(text)
            fh.truncate()
    seen = lab.host_exec(lab_clean, node.name, ["getent", "hosts", "internet"])
    assert seen.returncode != 0, seen.stdout  # the break is real, inside the node
    try:
        yield node
    finally:
        for name, text in saved.items():
            with files[name].open("r+") as fh:
                fh.write(text)
                fh.truncate()


def test_a_node_whose_names_do_not_resolve_is_told_apart(
    lab_clean: lab.LabState, named_targets: Path, broken_resolver: lab.HostState
) -> None:
    result = invoke("nat", "--config", str(named_targets))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = egress(lab_clean, named_targets)
    row = rows[broken_resolver.name]
    assert row.status == FAILED
    assert row.detail.startswith(
        f"name does not resolve on {broken_resolver.name} (resolver 127.0.0.53): internet:80 ("
    ), row.detail
    assert row.detail.endswith(f"; fix: {GENERIC.dns}")
    assert row.data["reached"] == "1/2"  # the address target still answers: NAT works
    others = [r for r in node_rows(rows, lab_clean) if r.host != broken_resolver.name]
    assert others and all(r.status == OK and r.data["reached"] == "2/2" for r in others)
    cli = invoke("check", "--egress", "--config", str(named_targets))
    assert cli.returncode == 1
    assert f"{broken_resolver.name}: name does not resolve on {broken_resolver.name}" in (
        cli.stderr)


def test_a_name_that_resolves_but_does_not_connect_says_so(
    lab_clean: lab.LabState, named_targets: Path
) -> None:
    result = invoke("nat", "--config", str(named_targets))
    assert result.returncode == 0, result.stdout + result.stderr
    lab.link_down(lab_clean, "inet")
    try:
        rows = egress(lab_clean, named_targets)
    finally:
        lab.link_up(lab_clean, "inet")
    for row in node_rows(rows, lab_clean):
        assert row.status == FAILED
        assert re.fullmatch(
            "target unreachable: internet:80 resolves to 198\\.19\\.0\\.1, connection fails "
            f"{LINK_DOWN}, 198\\.19\\.0\\.1:80 {LINK_DOWN}; "
            f"fix: {re.escape(GENERIC.forwarding)}", row.detail), row
