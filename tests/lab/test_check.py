"""`invoke check` against the real lab: one verified login per host, through the bastion.

These are the foundation's security properties, tested for real: host keys verified,
nodes only reachable through the bastion, the sudo password never shown anywhere.
"""

from __future__ import annotations

import json
import socket
import time
from functools import partial
from pathlib import Path

import pytest

import lab
from kubebastion.check import check_host
from kubebastion.errors import HostKeyChangedError, SSHError, UnknownHostKeyError
from kubebastion.runtime import build_run
from tests.lab import helpers
from tests.lab.conftest import LAB_PARAMS

pytestmark = pytest.mark.lab

invoke = partial(helpers.invoke, timeout=120, columns=False)


def accepted_logins(state: lab.LabState) -> dict[str, int]:
    return {h.name: Path(h.sshd_log).read_text().count("Accepted publickey")
            for h in [state.bastion, *state.nodes]}


def test_check_reaches_every_host_with_one_login_each(lab_env: lab.LabState) -> None:
    before = accepted_logins(lab_env)
    result = invoke("check", "--config", str(lab_env.nornir_config), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    hosts = {row["host"]: row for row in report["hosts"]}
    assert set(hosts) == {lab_env.bastion.name, *(n.name for n in lab_env.nodes)}
    for row in hosts.values():
        assert row["status"] == "ok", row
        assert row["data"]["user"] == lab_env.user
        assert row["data"]["sudo"] is True
        assert row["data"]["python3"].startswith("Python 3")
    after = accepted_logins(lab_env)
    assert {name: after[name] - before[name] for name in after} == dict.fromkeys(after, 1)


def test_nodes_are_reached_only_through_the_bastion(lab_env: lab.LabState) -> None:
    node = lab_env.nodes[0]
    # Bound to the lab link so the probe never leaves the machine by the default route.
    link = f"{LAB_PARAMS['name_prefix']}-op"
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.encode())
    probe.settimeout(2)
    with probe, pytest.raises(OSError):
        probe.connect((node.private_address, 22))
    run = build_run(lab_env.nornir_config)
    try:
        # Without the jump host, the node cannot be reached at all.
        host = run.nornir.inventory.hosts[node.name]
        extras = host.connection_options["fabric"].extras
        assert extras is not None and extras.pop("gateway")["name"] == lab_env.bastion.name
        result = run.nornir.filter(name=node.name).run(task=check_host)
        assert result.failed
        assert isinstance(result[node.name][0].exception, SSHError)
    finally:
        run.close()


def test_changed_host_key_is_refused_naming_host_and_both_fingerprints(
        lab_env: lab.LabState) -> None:
    name = lab_env.nodes[-1].name
    old = lab.load_state(lab_env.state_dir).host(name).host_key_fingerprint
    new = lab.replace_host_key(lab_env, name).host_key_fingerprint
    try:
        run = build_run(lab_env.nornir_config)
        try:
            result = run.nornir.run(task=check_host)
        finally:
            run.close()
        assert set(result.failed_hosts) == {name}
        exc = result[name][0].exception
        assert isinstance(exc, HostKeyChangedError)
        assert name in str(exc) and old in str(exc) and new in str(exc)
    finally:
        lab.replace_host_key(lab_env, name, update_known_hosts=True)


def test_unknown_host_is_refused_unless_opted_out(lab_env: lab.LabState,
                                                  tmp_path: Path) -> None:
    run = build_run(lab_env.nornir_config)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    try:
        bastion = run.nornir.inventory.hosts[lab_env.bastion.name]
        extras = bastion.connection_options["fabric"].extras
        assert extras is not None
        extras["known_hosts"] = str(empty)
        result = run.nornir.filter(name=bastion.name).run(task=check_host)
        exc = result[bastion.name][0].exception
        assert isinstance(exc, UnknownHostKeyError)
        assert "SHA256:" in str(exc) and bastion.name in str(exc)
    finally:
        run.close()
    run = build_run(lab_env.nornir_config)
    try:
        bastion = run.nornir.inventory.hosts[lab_env.bastion.name]
        extras = bastion.connection_options["fabric"].extras
        assert extras is not None
        extras["known_hosts"] = str(empty)
        extras["insecure_accept_unknown_host_keys_i_know_the_risk"] = True
        result = run.nornir.filter(name=bastion.name).run(task=check_host)
        assert not result.failed, result[bastion.name][0].exception
    finally:
        run.close()
    assert empty.read_text() == "", "the opt-out must not write known_hosts"


def test_password_sudo_works_and_the_password_appears_nowhere(lab_env: lab.LabState) -> None:
    sentinel = "kb-Sentinel-7f3a9c"
    log = Path(lab_env.state_dir) / "nornir.log"
    lab.up(**LAB_PARAMS, sudo_password=sentinel)
    try:
        config = str(lab_env.nornir_config)
        missing = invoke("check", "--config", config)
        assert missing.returncode == 1
        assert "needs a password" in missing.stdout + missing.stderr

        started = time.monotonic()
        wrong = invoke("check", "--config", config,
                       env={"KUBEBASTION_SUDO_PASSWORD": "not-the-password"})
        assert wrong.returncode == 1
        assert time.monotonic() - started < 30

        good = invoke("check", "--config", config, "--json",
                      env={"KUBEBASTION_SUDO_PASSWORD": sentinel})
        assert good.returncode == 0, good.stdout + good.stderr
        assert all(row["data"]["sudo"] for row in json.loads(good.stdout)["hosts"])
        for text in (missing.stdout, missing.stderr, wrong.stdout, wrong.stderr,
                     good.stdout, good.stderr, log.read_text() if log.exists() else ""):
            assert sentinel not in text
    finally:
        lab.up(**LAB_PARAMS)


def test_many_fast_commands_never_drop_the_shared_bastion_connection(
        lab_env: lab.LabState) -> None:
    """Fast commands end before we close their stdin; a late EOF after CLOSE makes
    OpenSSH drop the whole bastion connection, and every node's tunnel with it."""
    from nornir.core.task import Result, Task

    from kubebastion.ssh.remote import run as remote_run
    from kubebastion.ssh.shell import shell_for

    def many_true(task: Task) -> Result:
        shell = shell_for(task)
        codes = {remote_run(shell, "true").exit_code for _ in range(60)}
        return Result(host=task.host, result=codes)

    run = build_run(lab_env.nornir_config)
    try:
        result = run.nornir.run(task=many_true)
    finally:
        run.close()
    assert not result.failed, {h: r[0].exception for h, r in result.items() if r.failed}
    assert all(r[0].result == {0} for r in result.values())
