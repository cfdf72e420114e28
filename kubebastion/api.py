"""The Kubernetes API client: is the cluster up, seen from the bastion? The API answers
over TLS and lists every inventory node Ready.

It uses the admin credentials kubespray wrote (admin.conf, see
``kubebastion.kubeconfig.admin``) and talks HTTPS to ``access_ip:api_port`` through a
``direct-tcpip`` channel of the bastion connection, so the request leaves from the bastion
(where the playbook and kubectl users sit) without copying any key material there and
without needing curl on it. The server certificate is verified against the cluster CA and
the address we connect to, as kubectl would. Its users: the kubespray step's health check,
the kubeconfig step and its Ready verification (``kubebastion.kubeconfig.verify``), and
the tunnel.

``evaluate`` is pure; ``check_api`` does the I/O and never raises for "not up": the
answer is a ``ClusterHealth`` whose ``detail`` says what is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nornir.core import Nornir

from kubebastion.cluster import Cluster
from kubebastion.errors import KubeBastionError
from kubebastion.kubeconfig.merge import (
    kubeconfig_ca_pem,
    kubeconfig_client_cert_pem,
    kubeconfig_client_key_pem,
    parse_kubeconfig,
    resolve_context,
)
from kubebastion.report import describe_exception
from kubebastion.ssh.channel_socket import channel_socket
from kubebastion.ssh.connection import CONNECTION_NAME, open_tunnel
from kubebastion.ssh.settings import Endpoint

_TIMEOUT = 10.0

#: Opens a byte stream to (address, port) from the bastion's point of view.
Opener = Callable[[str, int], socket.socket]


@dataclass(frozen=True)
class ApiCredentials:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        return "ApiCredentials(***)"


@dataclass(frozen=True)
class ClusterHealth:
    healthy: bool
    detail: str
    api_version: str = ""
    ready: tuple[str, ...] = ()
    not_ready: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    #: Every node the API lists, expected or not (a removed node must be gone from it).
    registered: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def admin_credentials(text: str, source: str) -> ApiCredentials:
    config = parse_kubeconfig(text, source)
    refs = resolve_context(config)
    return ApiCredentials(kubeconfig_ca_pem(config, refs.cluster),
                          kubeconfig_client_cert_pem(config, refs.user),
                          kubeconfig_client_key_pem(config, refs.user))


def is_ready(node: Mapping[str, Any]) -> bool:
    """A Node's Ready condition is True (``Unknown``, ``False`` or none: not Ready)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_readiness(nodes: Mapping[str, Any]) -> dict[str, bool]:
    """Node name -> Ready, from a ``/api/v1/nodes`` NodeList."""
    return {str((item.get("metadata") or {}).get("name", "")): is_ready(item)
            for item in nodes.get("items") or []}


def evaluate(version: Mapping[str, Any], nodes: Mapping[str, Any],
             expected: Sequence[str]) -> ClusterHealth:
    """Healthy when every expected node is registered and Ready (extra nodes are fine)."""
    readiness = node_readiness(nodes)
    ready = tuple(n for n in expected if readiness.get(n) is True)
    not_ready = tuple(n for n in expected if readiness.get(n) is False)
    missing = tuple(n for n in expected if n not in readiness)
    api_version = str(version.get("gitVersion", ""))
    problems = []
    if not_ready:
        problems.append(f"not Ready: {', '.join(not_ready)}")
    if missing:
        problems.append(f"not registered: {', '.join(missing)}")
    detail = (f"API {api_version or 'up'}, {len(ready)}/{len(expected)} nodes Ready"
              + (f" ({'; '.join(problems)})" if problems else ""))
    return ClusterHealth(not problems, detail, api_version, ready, not_ready, missing,
                         tuple(readiness))


def tls_context(credentials: ApiCredentials) -> ssl.SSLContext:
    """A client context that trusts only the cluster CA and presents the admin
    certificate (``ssl`` loads keys from files only: a private temp dir, gone at once)."""
    context = ssl.create_default_context(cadata=credentials.ca_pem.decode())
    with tempfile.TemporaryDirectory(prefix="kubebastion-") as folder:
        cert, key = Path(folder) / "client.crt", Path(folder) / "client.key"
        for path, data in ((cert, credentials.cert_pem), (key, credentials.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(str(cert), str(key))
    return context


def api_get(opener: Opener, address: str, port: int, path: str,
            context: ssl.SSLContext, timeout: float = _TIMEOUT) -> Any:
    """GET ``path`` as JSON; raises ``OSError``/``ssl.SSLError``/``ValueError`` on failure."""
    raw = opener(address, port)
    raw.settimeout(timeout)
    tls = context.wrap_socket(raw, server_hostname=address.strip("[]"))
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    connection.sock = tls
    try:
        connection.request("GET", path, headers={"Accept": "application/json",
                                                 "Connection": "close"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"GET {path} answered HTTP {response.status}: "
                         f"{body[:200].decode(errors='replace')}")
    return json.loads(body)


def check_api(opener: Opener, address: str, port: int, credentials: ApiCredentials,
              expected: Sequence[str], timeout: float = _TIMEOUT) -> ClusterHealth:
    where = f"https://{address}:{port}"
    try:
        context = tls_context(credentials)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return ClusterHealth(False, f"{where}: unusable client credentials: {exc}")
    for attempt in (1, 2):  # one retry: a torn TLS stream (SSLEOFError) is not an answer
        try:
            version = api_get(opener, address, port, "/version", context, timeout)
            nodes = api_get(opener, address, port, "/api/v1/nodes", context, timeout)
            break
        except ssl.SSLCertVerificationError as exc:
            return ClusterHealth(False,
                                 f"{where}: TLS verification failed: {exc.verify_message}")
        except (OSError, ssl.SSLError, ValueError, http.client.HTTPException,
                KubeBastionError) as exc:
            if attempt == 2 or not isinstance(exc, ssl.SSLError | ConnectionError):
                return ClusterHealth(False, f"{where}: {describe_exception(exc)}")
    if not isinstance(version, Mapping) or not isinstance(nodes, Mapping):
        return ClusterHealth(False, f"{where}: unexpected answer")
    return evaluate(version, nodes, expected)


def poll_health(check: Callable[[], ClusterHealth], timeout: float, interval: float = 2.0,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> ClusterHealth:
    """Call ``check`` until the cluster is healthy or ``timeout`` passes; the last answer.
    (The playbook ends before the last kubelet reports Ready, so one look is not enough.)"""
    deadline = clock() + timeout
    while True:
        health = check()
        if health.healthy or clock() >= deadline:
            return health
        sleep(interval)


def bastion_opener(nornir: Nornir, cluster: Cluster, timeout: float = _TIMEOUT) -> Opener:
    """Connections from the bastion: a tunnel over its SSH connection, or a plain socket
    when kubebastion runs on the bastion itself."""
    if cluster.bastion.local:
        return lambda address, port: socket.create_connection((address, port), timeout)
    host = nornir.inventory.hosts[cluster.bastion.name]
    # Nornir's get_connection is not thread-safe: two threads opening the first tunnel at
    # once would each open a connection, and the one Nornir does not keep is never closed.
    first_use = threading.Lock()

    def open_from_bastion(address: str, port: int) -> socket.socket:
        with first_use:
            connection = host.get_connection(CONNECTION_NAME, nornir.config)
        channel = open_tunnel(connection, cluster.bastion.name, Endpoint(address, port, ""),
                              f"API {address}:{port}", timeout)
        return channel_socket(channel)

    return open_from_bastion
