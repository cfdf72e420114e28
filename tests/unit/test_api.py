"""The Kubernetes API client: the "cluster already up" verdict, the TLS client against a real
local HTTPS server that demands a client certificate signed by its CA, and ``poll_health``,
the one poller for "every node Ready" after kubespray and after a fetch."""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubebastion.api import (
    ClusterHealth,
    admin_credentials,
    check_api,
    evaluate,
    node_readiness,
    poll_health,
)


def node(name: str, ready: str | None) -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "MemoryPressure", "status": "False"},
                                           {"type": "Ready", "status": ready}]
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


VERSION = {"gitVersion": "v1.33.4-lab"}


def test_every_expected_node_ready_is_healthy() -> None:
    nodes = {"items": [node("k8s-m0", "True"), node("k8s-w0", "True"), node("extra", "False")]}
    health = evaluate(VERSION, nodes, ["k8s-m0", "k8s-w0"])
    assert health.healthy and health.detail == "API v1.33.4-lab, 2/2 nodes Ready"
    assert health.registered == ("k8s-m0", "k8s-w0", "extra")  # what remove-node checks


def test_not_ready_and_missing_nodes_are_named() -> None:
    nodes = {"items": [node("k8s-m0", "True"), node("k8s-w0", "Unknown"), node("k8s-w1", None)]}
    health = evaluate(VERSION, nodes, ["k8s-m0", "k8s-w0", "k8s-w1", "k8s-w2"])
    assert not health.healthy
    assert health.not_ready == ("k8s-w0", "k8s-w1") and health.missing == ("k8s-w2",)
    assert "not Ready: k8s-w0, k8s-w1" in health.detail
    assert "not registered: k8s-w2" in health.detail
    assert node_readiness({}) == {}


# --- a real TLS endpoint --------------------------------------------------------------------

def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, ca: bool = False,
          sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class PKI:
    def __init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
        self.ca = _cert("kubernetes", self.ca_key, ca_name, self.ca_key, ca=True)
        self.server_key = ec.generate_private_key(ec.SECP256R1())
        self.server = _cert("kube-apiserver", self.server_key, ca_name, self.ca_key,
                            sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.client_key = ec.generate_private_key(ec.SECP256R1())
        self.client = _cert("kubernetes-admin", self.client_key, ca_name, self.ca_key)

    def admin_conf(self) -> str:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "admin@cluster.local",
            "clusters": [{"name": "cluster.local", "cluster": {
                "server": "https://127.0.0.1:6443",
                "certificate-authority-data": b64(_pem(self.ca))}}],
            "users": [{"name": "kubernetes-admin", "user": {
                "client-certificate-data": b64(_pem(self.client)),
                "client-key-data": b64(_pem(self.client_key))}}],
            "contexts": [{"name": "admin@cluster.local", "context": {
                "cluster": "cluster.local", "user": "kubernetes-admin"}}],
        })


class Handler(http.server.BaseHTTPRequestHandler):
    nodes: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        body = {"/version": VERSION, "/api/v1/nodes": self.nodes}.get(self.path)
        data = json.dumps(body).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PKI, int]]:
    pki = PKI()
    folder: Path = tmp_path_factory.mktemp("pki")
    for name, obj in (("ca.crt", pki.ca), ("server.crt", pki.server),
                      ("server.key", pki.server_key)):
        (folder / name).write_bytes(_pem(obj))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(folder / "ca.crt"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(folder / "server.crt"), str(folder / "server.key"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield pki, server.server_address[1]
    server.shutdown()


def opener(address: str, port: int) -> socket.socket:
    return socket.create_connection((address, port), 5)


def test_check_api_over_tls_with_the_admin_client_cert(api: tuple[PKI, int]) -> None:
    pki, port = api
    Handler.nodes = {"items": [node("k8s-m0", "True"), node("k8s-w0", "True")]}
    credentials = admin_credentials(pki.admin_conf(), "k8s-m0:/etc/kubernetes/admin.conf")
    assert "PRIVATE" not in repr(credentials)
    health = check_api(opener, "127.0.0.1", port, credentials, ["k8s-m0", "k8s-w0"])
    assert health.healthy, health.detail
    assert health.api_version == "v1.33.4-lab"
    Handler.nodes = {"items": [node("k8s-m0", "True")]}
    assert check_api(opener, "127.0.0.1", port, credentials, ["k8s-m0", "k8s-w0"]).missing == (
        "k8s-w0",)


def test_a_server_outside_the_certificate_is_not_trusted(api: tuple[PKI, int]) -> None:
    _, port = api
    other = PKI()  # another cluster's CA: the server cannot be verified
    credentials = admin_credentials(other.admin_conf(), "x")
    health = check_api(opener, "127.0.0.1", port, credentials, ["k8s-m0"])
    assert not health.healthy and "TLS verification failed" in health.detail


def test_nothing_listening_is_not_up() -> None:
    pki = PKI()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    health = check_api(opener, "127.0.0.1", port, admin_credentials(pki.admin_conf(), "x"),
                       ["k8s-m0"], timeout=2)
    assert not health.healthy and f"https://127.0.0.1:{port}" in health.detail


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def answers(*healthy: bool) -> Callable[[], ClusterHealth]:
    seen = iter(healthy)
    return lambda: ClusterHealth(next(seen), "detail")


def test_returns_at_the_first_healthy_answer() -> None:
    clock = FakeClock()
    health = poll_health(answers(False, False, True, False), timeout=60, interval=2,
                         clock=clock, sleep=clock.sleep)
    assert health.healthy and clock.now == 4.0


def test_gives_the_last_answer_at_the_timeout() -> None:
    clock = FakeClock()
    health = poll_health(answers(*[False] * 10), timeout=5, interval=2, clock=clock,
                         sleep=clock.sleep)
    assert not health.healthy and clock.now == 6.0
