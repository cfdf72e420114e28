"""The connection pool's sharing rules (stand-in connections, pure logic), and `connect`
turning every way a handshake can end into an ``SSHError`` naming the host (a raw
``EOFError: `` with no text told the operator nothing)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest
from nornir.core import Nornir
from nornir.core.inventory import Defaults, Groups, Hosts, Inventory

from kubebastion.errors import SSHError
from kubebastion.ssh.connection import ConnectionPool, connect, pool_of
from kubebastion.ssh.settings import Endpoint, SSHSettings

BASTION = Endpoint("198.18.0.2", 22, "ops")


class StandIn:
    def __init__(self, connected: bool = True) -> None:
        self.is_connected = connected

    def close(self) -> None:
        self.is_connected = False


def test_waiters_share_a_failure_and_later_callers_try_again() -> None:
    pool = ConnectionPool()
    held = StandIn()
    assert pool.acquire(BASTION, lambda: held) is held  # a reference kept (the entry lives)
    held.is_connected = False  # the connection died: the next caller reconnects
    release = threading.Event()
    calls: list[str] = []

    def failing() -> Any:
        calls.append("failing")
        release.wait(5)
        raise SSHError("bastion: cannot connect: boom")

    errors: list[str] = []

    def acquire(connect: Any) -> None:
        try:
            pool.acquire(BASTION, connect)
        except SSHError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=acquire, args=(failing,))
    first.start()
    while not calls:
        time.sleep(0.01)
    waiter = threading.Thread(target=acquire, args=(lambda: calls.append("waiter"),))
    waiter.start()
    time.sleep(0.1)  # the waiter is blocked behind the connecting thread
    release.set()
    first.join(5)
    waiter.join(5)
    assert calls == ["failing"], "a thread that waited on the failed attempt retried"
    assert errors == ["bastion: cannot connect: boom"] * 2

    fresh = StandIn()
    assert pool.acquire(BASTION, lambda: fresh) is fresh, "a later caller got the old error"


def test_the_last_release_closes_and_forgets() -> None:
    pool = ConnectionPool()
    conn = StandIn()
    pool.acquire(BASTION, lambda: conn)
    pool.acquire(BASTION, lambda: pytest.fail("a live connection is shared"))
    pool.release(BASTION)
    assert conn.is_connected and pool.open_count() == 1
    pool.release(BASTION)
    assert not conn.is_connected and pool.open_count() == 0


def settings(tmp_path: Path) -> SSHSettings:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (tmp_path / "known_hosts").write_text("")
    return SSHSettings.from_extras({"private_key": str(key),
                                    "known_hosts": str(tmp_path / "known_hosts"),
                                    "banner_timeout": 2, "connect_timeout": 2})


def test_a_tunnel_closed_before_the_handshake_names_the_host(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    theirs.close()  # the jump host's channel is gone before the node's banner is sent
    with pytest.raises(SSHError) as raised:
        connect(Endpoint("198.18.9.9", 22, "ops"), settings(tmp_path), "k8s-w7",
                sock=ours)  # type: ignore[arg-type]  # any socket-like object will do
    message = str(raised.value)
    assert message.startswith("k8s-w7 (ops@198.18.9.9:22): ")
    assert "closed" in message and "jump host" in message
    ours.close()


def test_a_peer_that_says_nothing_is_a_banner_timeout(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()  # theirs stays open and silent
    try:
        with pytest.raises(SSHError, match="no SSH banner within 2 s"):
            connect(Endpoint("198.18.9.9", 22, "ops"), settings(tmp_path), "k8s-w7",
                    sock=ours)  # type: ignore[arg-type]
    finally:
        ours.close()
        theirs.close()


def empty_nornir() -> Nornir:
    return Nornir(inventory=Inventory(hosts=Hosts(), groups=Groups(), defaults=Defaults()))


def test_each_run_has_its_own_pool_shared_by_its_filtered_copies() -> None:
    first, second = empty_nornir(), empty_nornir()
    assert pool_of(first.config) is pool_of(first.filter(filter_func=lambda h: True).config)
    assert pool_of(first.config) is not pool_of(second.config)


class DyingTunnel:
    """A tunnel channel whose close fails, as one does while its jump host's connection
    is being closed (Paramiko's send of the channel's CLOSE raises EOFError)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()
        self.closed = True
        raise EOFError


def test_a_tunnel_that_fails_to_close_ends_the_transport_thread_cleanly(
        tmp_path: Path) -> None:
    """The node's transport thread closes its tunnel as it ends; an error there used to
    kill the thread with an unhandled exception (the suite turns that into a failure)."""
    ours, theirs = socket.socketpair()
    theirs.close()
    with pytest.raises(SSHError):
        connect(Endpoint("198.18.9.9", 22, "ops"), settings(tmp_path), "k8s-w7",
                sock=DyingTunnel(ours))  # type: ignore[arg-type]
    for thread in threading.enumerate():
        if isinstance(thread, paramiko.Transport):
            thread.join(10)
