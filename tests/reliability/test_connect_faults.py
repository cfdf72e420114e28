"""Getting in: unreachable hosts, a listener that never speaks SSH, wrong keys, changed
and unknown host keys. Each fails within its bound, names the host, and leaves the other
hosts alone.

The inventory copies here use short timeouts (3 s) so the bounds are tight: a host that
cannot be reached must fail within ``connect_timeout`` + 2 s, a silent listener within
``banner_timeout`` + 2 s.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import lab
from kubebastion.check import check_host
from kubebastion.errors import (
    AuthenticationError,
    HostKeyChangedError,
    SSHError,
    UnknownHostKeyError,
)
from kubebastion.ssh.settings import INSECURE_OPT_OUT
from tests.reliability.conftest import RLAB_PARAMS, Figures
from tests.reliability.helpers import (
    Inventory,
    bastion_back,
    exception_text,
    fresh,
    invoke,
    timed_run,
    write_config,
)

#: The section title in docs/reliability.md.
TITLE = "Getting in: unreachable hosts, silent listeners, wrong and unknown keys"
pytestmark = pytest.mark.lab

CONNECT_TIMEOUT = 3.0
BANNER_TIMEOUT = 3.0
AUTH_TIMEOUT = 3.0
SLACK = 2.0
SILENT_PORT = 2222
SHORT = {"connect_timeout": CONNECT_TIMEOUT, "banner_timeout": BANNER_TIMEOUT,
         "auth_timeout": AUTH_TIMEOUT, "command_timeout": 30}
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(128)
print("ready", flush=True)
held = []
while True:
    held.append(s.accept()[0])  # accepted, never answered
"""


@pytest.fixture(scope="module")
def quick(rlab: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(rlab, tmp_path_factory.mktemp("quick"), extras=SHORT)


@pytest.fixture(autouse=True)
def lab_back_in_shape(rlab: lab.LabState) -> Iterator[None]:
    yield
    lab.up(**RLAB_PARAMS)  # links up, sshds running, known_hosts in line with the keys


@contextmanager
def silent_listener(namespace: str, address: str, port: int) -> Iterator[None]:
    """A TCP listener in a lab namespace that accepts and never sends a byte."""
    proc = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", LISTENER,
                             address, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def others_ok(results: object, hosts: list[str]) -> list[str]:
    from nornir.core.task import AggregatedResult

    assert isinstance(results, AggregatedResult)
    return [h for h in hosts if h in results and not results[h].failed]


def test_unreachable_node_fails_within_connect_timeout_and_the_others_finish(
        rlab: lab.LabState, quick: Path, figures: Figures) -> None:
    victim = rlab.nodes[-1].name
    everyone = [h.name for h in rlab.hosts]
    lab.link_down(rlab, victim)
    try:
        results, seconds = timed_run(quick, check_host)
        cli = invoke("check", "--config", quick, "--json")
    finally:
        lab.link_up(rlab, victim)
    message = exception_text(results, victim)
    finished = others_ok(results, [h for h in everyone if h != victim])
    figures.seconds(f"unreachable node ({victim}: link down), `check`", seconds[victim],
                    CONNECT_TIMEOUT + SLACK, f"≤ connect_timeout {CONNECT_TIMEOUT:g} s + 2 s",
                    detail=message, ok=set(results.failed_hosts) == {victim})
    assert set(results.failed_hosts) == {victim}, message
    assert isinstance(results[victim][0].exception, SSHError)
    assert victim in message
    assert seconds[victim] <= CONNECT_TIMEOUT + SLACK, message
    assert len(finished) == len(everyone) - 1
    assert cli.code == 1
    rows = cli.rows()
    assert rows[victim]["status"] == "failed"
    assert all(rows[h]["status"] == "ok" for h in everyone if h != victim)
    assert "check failed on 1 host(s)" in cli.stderr and f"  {victim}: " in cli.stderr

    again = invoke("check", "--config", quick, "--json")
    assert again.code == 0 and all(r["status"] == "ok" for r in again.rows().values())


def test_unreachable_bastion_fails_every_host_within_connect_timeout(
        rlab: lab.LabState, quick: Path, figures: Figures) -> None:
    lab.link_down(rlab, "bastion")
    try:
        results, seconds = timed_run(quick, check_host)
    finally:
        bastion_back(rlab)
    slowest = max(seconds, key=lambda h: seconds[h])
    message = exception_text(results, "bastion")
    all_failed = set(results.failed_hosts) == {h.name for h in rlab.hosts}
    figures.seconds("unreachable bastion (link down): every host fails, `check`",
                    seconds[slowest], CONNECT_TIMEOUT + SLACK,
                    f"≤ connect_timeout {CONNECT_TIMEOUT:g} s + 2 s for every host",
                    detail=f"slowest: {slowest} after {seconds[slowest]:.1f} s; "
                           + ", ".join(f"{h} {s:.1f} s" for h, s in sorted(seconds.items())),
                    ok=all_failed)
    assert all_failed
    assert "bastion" in message and "timed out" in message
    for node in rlab.nodes:
        assert "bastion" in exception_text(results, node.name)
    assert seconds[slowest] <= CONNECT_TIMEOUT + SLACK, (
        f"{slowest} failed only after {seconds[slowest]:.1f} s: "
        + ", ".join(f"{h} {s:.1f} s" for h, s in sorted(seconds.items())))


def test_a_listener_that_never_sends_a_banner_fails_within_banner_timeout(
        rlab: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    """A node whose port answers TCP but never speaks SSH (reached through the bastion)."""
    victim = rlab.nodes[0]

    def to_silent_port(inventory: Inventory) -> None:
        inventory.hosts[victim.name]["port"] = SILENT_PORT

    config = write_config(rlab, tmp_path, extras=SHORT, edit=to_silent_port)
    with silent_listener(victim.namespace, victim.private_address, SILENT_PORT):
        results, seconds = timed_run(config, check_host)
    message = exception_text(results, victim.name)
    figures.seconds(f"listener that never sends an SSH banner ({victim.name}, via the bastion)",
                    seconds[victim.name], BANNER_TIMEOUT + SLACK,
                    f"≤ banner_timeout {BANNER_TIMEOUT:g} s + 2 s", detail=message,
                    ok=set(results.failed_hosts) == {victim.name})
    assert set(results.failed_hosts) == {victim.name}, message
    assert victim.name in message
    assert "no SSH banner" in message, message
    assert seconds[victim.name] <= BANNER_TIMEOUT + SLACK, message


def test_a_bastion_that_never_sends_a_banner_fails_every_host_within_banner_timeout(
        rlab: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    bastion = fresh(rlab).bastion

    def to_silent_port(inventory: Inventory) -> None:
        inventory.hosts["bastion"]["port"] = SILENT_PORT

    config = write_config(rlab, tmp_path, extras=SHORT, edit=to_silent_port)
    with silent_listener(bastion.namespace, bastion.ssh_address, SILENT_PORT):
        results, seconds = timed_run(config, check_host)
    slowest = max(seconds, key=lambda h: seconds[h])
    all_failed = set(results.failed_hosts) == {h.name for h in rlab.hosts}
    figures.seconds("bastion listener that never sends an SSH banner: every host fails",
                    seconds[slowest], BANNER_TIMEOUT + SLACK,
                    f"≤ banner_timeout {BANNER_TIMEOUT:g} s + 2 s for every host",
                    detail=", ".join(f"{h} {s:.1f} s" for h, s in sorted(seconds.items())),
                    ok=all_failed)
    assert all_failed
    assert "bastion" in exception_text(results, "bastion")
    assert "no SSH banner" in exception_text(results, "bastion")
    assert seconds[slowest] <= BANNER_TIMEOUT + SLACK, (
        f"{slowest} failed only after {seconds[slowest]:.1f} s: "
        + ", ".join(f"{h} {s:.1f} s" for h, s in sorted(seconds.items())))


def test_wrong_key_is_an_authentication_error_naming_host_and_user(
        rlab: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    wrong = tmp_path / "wrong_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)],
                   check=True)
    victim = rlab.nodes[0].name

    def wrong_key_for_victim(inventory: Inventory) -> None:
        inventory.host_extras(victim, private_key=str(wrong))

    config = write_config(rlab, tmp_path / "one", extras=SHORT, edit=wrong_key_for_victim)
    results, seconds = timed_run(config, check_host)
    message = exception_text(results, victim)
    exc = results[victim][0].exception
    named = victim in message and repr(rlab.user) in message and str(wrong) in message
    figures.seconds(f"wrong key for one node ({victim})", seconds[victim],
                    AUTH_TIMEOUT + SLACK, f"authentication error naming host and user, "
                    f"≤ auth_timeout {AUTH_TIMEOUT:g} s + 2 s", detail=message,
                    ok=isinstance(exc, AuthenticationError) and named)
    assert set(results.failed_hosts) == {victim}, message
    assert isinstance(exc, AuthenticationError) and named, message
    assert seconds[victim] <= AUTH_TIMEOUT + SLACK

    everywhere = write_config(rlab, tmp_path / "all", extras={**SHORT,
                                                              "private_key": str(wrong)})
    cli = invoke("check", "--config", everywhere, "--json")
    rows = cli.rows()
    assert cli.code == 1 and all(r["status"] == "failed" for r in rows.values())
    detail = rows["bastion"]["detail"]
    figures.record("wrong key for every host (`invoke check`)", "exit 1, every host failed, "
                   "the error names host and user", f"exit {cli.code}, {len(rows)} failed",
                   cli.code == 1 and "authentication failed" in detail, detail=detail)
    assert "bastion" in detail and repr(rlab.user) in detail and "authentication failed" in detail


def test_changed_host_key_is_refused_naming_host_and_both_fingerprints(
        rlab: lab.LabState, quick: Path, figures: Figures) -> None:
    victim = rlab.nodes[-1].name
    old = fresh(rlab).host(victim).host_key_fingerprint
    new = lab.replace_host_key(fresh(rlab), victim).host_key_fingerprint
    results, seconds = timed_run(quick, check_host)
    cli = invoke("check", "--config", quick, "--json")
    message = exception_text(results, victim)
    exc = results[victim][0].exception
    refused = (isinstance(exc, HostKeyChangedError) and victim in message and old in message
               and new in message)
    figures.seconds(f"changed host key ({victim})", seconds[victim],
                    CONNECT_TIMEOUT + SLACK, "refused, naming host and both fingerprints",
                    detail=message, ok=refused and set(results.failed_hosts) == {victim})
    assert set(results.failed_hosts) == {victim}, message
    assert refused, message
    assert cli.code == 1 and old in cli.rows()[victim]["detail"]
    assert new in cli.rows()[victim]["detail"]


def test_unknown_host_is_refused_unless_the_explicit_opt_out(
        rlab: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    victim = fresh(rlab).nodes[0]
    known = tmp_path / "known_hosts"
    lines = fresh(rlab).known_hosts.read_text().splitlines()
    known.write_text("".join(f"{line}\n" for line in lines
                             if not line.startswith(victim.ssh_address + " ")))
    before = known.read_text()
    strict = write_config(rlab, tmp_path / "strict", extras={**SHORT,
                                                             "known_hosts": str(known)})
    results, seconds = timed_run(strict, check_host)
    message = exception_text(results, victim.name)
    exc = results[victim.name][0].exception
    refused = (isinstance(exc, UnknownHostKeyError) and victim.name in message
               and victim.host_key_fingerprint in message)
    opted = write_config(rlab, tmp_path / "opted", extras={
        **SHORT, "known_hosts": str(known), INSECURE_OPT_OUT: True})
    cli = invoke("check", "--config", opted, "--json")
    accepted = cli.code == 0 and all(r["status"] == "ok" for r in cli.rows().values())
    figures.record(f"unknown host ({victim.name} not in known_hosts)",
                   f"refused with its fingerprint; accepted only with `{INSECURE_OPT_OUT}`",
                   f"refused in {seconds[victim.name]:.2f} s; opt-out: exit {cli.code}",
                   refused and accepted and known.read_text() == before, detail=message)
    assert set(results.failed_hosts) == {victim.name}, message
    assert refused, message
    assert accepted, cli.output[-2000:]
    assert known.read_text() == before, "the opt-out must not write known_hosts"
