"""The local forward of ``invoke tunnel``: bytes both ways, and a lost bastion connection
closes the client's connection without a thread dying on an unhandled exception (the
suite turns that warning into a failure)."""

from __future__ import annotations

import socket
import threading

from kubebastion.errors import SSHError
from kubebastion.ssh.tunnel import forward


def test_bytes_go_both_ways_through_the_forward() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server_port = server.getsockname()[1]

    def echo_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(1024).upper())

    thread = threading.Thread(target=echo_once)
    thread.start()

    def opener(address: str, port: int) -> socket.socket:
        return socket.create_connection((address, port), 5)

    with forward(opener, "127.0.0.1", server_port, 0) as local_port, \
            socket.create_connection(("127.0.0.1", local_port), 5) as client:
        client.sendall(b"ping")
        assert client.recv(1024) == b"PING"
    thread.join(5)
    server.close()


def test_a_lost_bastion_connection_closes_the_client_without_a_traceback() -> None:
    calls: list[str] = []

    def opener(address: str, port: int) -> socket.socket:
        calls.append(address)
        raise SSHError("bastion: connection lost")

    with forward(opener, "198.18.0.1", 6443, 0) as local_port, \
            socket.create_connection(("127.0.0.1", local_port), 5) as client:
        client.settimeout(5)
        assert client.recv(1024) == b""  # closed by the forward
    assert calls == ["198.18.0.1"]
