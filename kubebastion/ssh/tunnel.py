"""The ``tunnel`` command: the operator's local port forwarded to the API through the bastion.

The operator usually cannot route to the private API address. A local forward over the
bastion's SSH connection (the same verified connection every step uses) gives kubectl a
``https://127.0.0.1:<port>`` endpoint; the kubeconfig's ``tls-server-name`` keeps TLS
verification on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator

from nornir.core import Nornir

from kubebastion.api import Opener, bastion_opener
from kubebastion.cluster import Cluster
from kubebastion.errors import ConfigError, SSHError
from kubebastion.ssh.channel_socket import pump


def _serve(client: socket.socket, opener: Opener, address: str, port: int) -> None:
    """One client's connection, in its own thread: when the bastion cannot be reached
    (its connection lost: ``SSHError``), the client's connection is closed and the thread
    ends, without a traceback; the next client tries again."""
    try:
        upstream = opener(address, port)
    except (OSError, SSHError):
        client.close()
        return
    upstream.settimeout(None)
    threads = [threading.Thread(target=pump, args=pair, daemon=True)
               for pair in ((client, upstream), (upstream, client))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    upstream.close()


@contextlib.contextmanager
def forward(opener: Opener, address: str, port: int, local_port: int,
            bind: str = "127.0.0.1") -> Iterator[int]:
    """Listen on ``bind:local_port`` (0 = any free port, yielded) and forward each
    connection to ``address:port`` as seen from the bastion."""
    try:
        listener = socket.create_server((bind, local_port))
    except OSError as exc:  # in use, an address not ours, a port below 1024 without root
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"cannot listen on {bind}:{local_port}: {reason}; "
                          f"choose another --port or --bind") from None
    stop = threading.Event()

    def accept_loop() -> None:
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_serve, args=(client, opener, address, port),
                             daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True, name="kubebastion-tunnel")
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=2)


def serve_api(nornir: Nornir, cluster: Cluster, local_port: int, bind: str,
              on_ready: Callable[[str], None]) -> None:
    """The ``tunnel`` command: forward ``bind:local_port`` to the cluster's API through the
    bastion until Ctrl-C or SIGTERM (how a service manager or ``kill`` stops it), then
    return normally. ``on_ready`` gets the line that says where it listens."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        opener = bastion_opener(nornir, cluster)
        target = cluster.api_server_address
        with forward(opener, target, cluster.api_port, local_port, bind) as port:
            on_ready(f"tunnel: {bind}:{port} -> {target}:{cluster.api_port} "
                     f"via {cluster.bastion.name} (Ctrl-C to stop)")
            try:
                while not stop.wait(1):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
