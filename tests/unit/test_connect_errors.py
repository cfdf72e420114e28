"""``connect`` turns every way a handshake can end into an ``SSHError`` naming the host
(a raw ``EOFError: `` with no text told the operator nothing)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from kubebastion.errors import SSHError
from kubebastion.ssh.connection import connect
from kubebastion.ssh.settings import Endpoint, SSHSettings


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
