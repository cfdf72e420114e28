"""Tunnels through the bastion's connection under churn, for real.

Many short TLS connections to the lab's API server, closed by the client while the
server is still sending (TLS 1.3 session tickets follow the handshake), through the one
shared SSH connection to the bastion. Paramiko's channel pipe raced its transport
thread on exactly this pattern and killed the connection: "connection lost" on about
one ``fetch-kubeconfig`` in fifteen (see ``kubebastion.channel_socket``).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator

import pytest

import lab
from kubebastion import remote
from kubebastion.kubespray.health import bastion_opener
from kubebastion.runtime import Run, build_run
from kubebastion.shell import shell_for_host
from tests.lab.test_kubespray import invoke_kubespray, write_config

pytestmark = pytest.mark.lab
THREADS = 4
ROUNDS = 75  # per thread; the old pipe race lost the connection within ~100 handshakes


@pytest.fixture(scope="module")
def run(lab_env: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    config = write_config(lab_env, tmp_path_factory.mktemp("tunnels"))
    deployed = invoke_kubespray(config)
    assert deployed.code == 0, deployed.stderr[-2000:]
    run = build_run(config)
    yield run
    run.close()


def pump_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("kubebastion-")]


def test_tls_churn_through_the_bastion_keeps_its_connection(run: Run) -> None:
    opener = bastion_opener(run.nornir, run.cluster)
    address, port = run.cluster.control_planes[0].access_ip, run.cluster.api_port
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only the handshake matters here
    errors: list[str] = []
    handshakes = [0]

    def churn() -> None:
        for _ in range(ROUNDS):
            try:
                with context.wrap_socket(opener(address, port), server_hostname=address) as tls:
                    assert tls.getpeercert(binary_form=True)
                handshakes[0] += 1
            except (OSError, ssl.SSLError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=churn) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, f"{len(errors)} of {THREADS * ROUNDS} handshakes failed: {errors[:3]}"
    assert handshakes[0] == THREADS * ROUNDS

    bastion = run.nornir.inventory.hosts[run.cluster.bastion.name]
    result = remote.run(shell_for_host(bastion, run.nornir.config), "echo alive")
    assert result.stdout == "alive\n", "the bastion connection did not survive the churn"

    deadline = time.monotonic() + 5  # every closed tunnel ends both of its pump threads
    while pump_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pump_threads(), f"pump threads left running: {pump_threads()[:4]}"

