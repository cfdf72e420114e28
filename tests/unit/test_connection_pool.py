"""The connection pool's sharing rules, with stand-in connections (pure logic)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kubebastion.errors import SSHError
from kubebastion.ssh.connection import ConnectionPool
from kubebastion.ssh.settings import Endpoint

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
