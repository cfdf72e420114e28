"""The floor of the benchmark: workload A with nothing but Paramiko and threads.

    .venv/bin/python bench/floor_workload.py HOSTS.json

One transport to the bastion; per node, a ``direct-tcpip`` channel through it carrying the
node's own transport; one exec of the batched check line per host (bastion included), its
output drained, exit status checked. Host keys are verified against the lab's known_hosts,
the key is loaded once. No inventory, no Nornir, no Fabric, no result objects: what is left
of kubebastion's run once everything that is not SSH is taken away, so kubebastion's wall
time over this one is its own overhead. It uses the same Python and Paramiko (the repo's
.venv) so both pay the same crypto.

HOSTS.json (written by bench.py): user, key, known_hosts, bastion (address), nodes
(addresses). Exits 1 when any host failed, naming it on stderr. Prints its peak RSS.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paramiko
from workloads import CHECK_BATCH

PORT = 22
TIMEOUT = 60.0


def connect(sock: Any, address: str, user: str, key: paramiko.PKey,
            known: paramiko.HostKeys) -> paramiko.Transport:
    transport = paramiko.Transport(sock if sock is not None else (address, PORT))
    transport.start_client(timeout=TIMEOUT)
    server_key = transport.get_remote_server_key()
    if not known.check(address, server_key):
        transport.close()
        raise RuntimeError(f"{address}: host key not in known_hosts")
    transport.auth_publickey(user, key)
    return transport


def check(transport: paramiko.Transport) -> None:
    channel = transport.open_session(timeout=TIMEOUT)
    channel.settimeout(TIMEOUT)
    channel.exec_command(CHECK_BATCH)
    while channel.recv(65536):
        pass
    while channel.recv_stderr_ready():
        channel.recv_stderr(65536)
    status = channel.recv_exit_status()
    channel.close()
    if status != 0:
        raise RuntimeError(f"exit {status}")


def main() -> int:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    key = paramiko.Ed25519Key.from_private_key_file(spec["key"])
    known = paramiko.HostKeys(spec["known_hosts"])
    user, bastion_address = spec["user"], spec["bastion"]
    bastion = connect(None, bastion_address, user, key, known)
    failures: dict[str, str] = {}
    lock = threading.Lock()
    transports: list[paramiko.Transport] = []

    def node(address: str) -> None:
        try:
            tunnel = bastion.open_channel("direct-tcpip", (address, PORT), ("127.0.0.1", 0),
                                          timeout=TIMEOUT)
            transport = connect(tunnel, address, user, key, known)
            with lock:
                transports.append(transport)
            check(transport)
        except Exception as exc:  # reported per host, like the other tools
            with lock:
                failures[address] = f"{type(exc).__name__}: {exc}"

    def on_bastion() -> None:
        try:
            check(bastion)
        except Exception as exc:
            with lock:
                failures[bastion_address] = f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=len(spec["nodes"]) + 1) as pool:
        pool.submit(on_bastion)
        for address in spec["nodes"]:
            pool.submit(node, address)
    # Every check is in; a close racing the server's own close of a tunnel (EOFError from
    # Paramiko's packetizer, seen once in 8 runs at N = 60) is not a failed host.
    for transport in [*transports, bastion]:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            transport.close()
    for address, why in sorted(failures.items()):
        print(f"{address}: {why}", file=sys.stderr)
    print(f"peak_rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
