"""Sending on a Paramiko channel without ever sending after its CLOSE.

OpenSSH drops the *whole connection* when a DATA or EOF arrives for a channel it has
already freed ("data packet referred to nonexistent channel", "ieof packet referred to
nonexistent channel"). Through the bastion, that is every node's tunnel at once.

Paramiko checks ``closed`` under the channel's lock but sends after releasing it, so
when the server ends the channel (a command that exits at once, an API server closing a
connection) the transport thread can answer the server's CLOSE in between, and our
packet follows our CLOSE. Both races were seen in the lab: EOF after a fast command, and
a sudo password sent to a sudo that needed none.

Here each packet is decided and sent under the channel's lock; the transport thread
takes the same lock to handle CLOSE, so a packet is sent before our CLOSE or not at all.
Paramiko sends outside the lock so that a key re-exchange cannot stall on it; here the
worst case of that rare coincidence is Paramiko's 30 s key-exchange wait.

Paramiko has no public call that sends under the channel's lock (``Channel.send`` takes
that lock itself, and it is not reentrant), so this module is the one place in
kubebastion that uses Paramiko's private API, two methods (every other use was replaced
by public API; messages are built here from Paramiko's public constants and the
channel's public ``lock``, ``closed``, ``eof_sent`` and ``remote_chanid``):

* ``Channel._wait_for_send_window(size)``, called holding the lock: waits for the peer's
  window as ``Channel.send`` does and returns how many bytes may go (0 once closed or
  after EOF). Rewriting it would mean copying its window bookkeeping.
* ``Transport._send_user_message(message)``: sends a packet, waiting out a key
  re-exchange, as every channel send of Paramiko does; the public sends all go through it.

Tested with paramiko 5.1.0 (the lab's races: ``tests/lab/test_channel_races.py``); both
methods are unchanged, line for line, from paramiko 3.5.1 to 5.1.0. pyproject.toml pins
paramiko to the tested minor release: check these two before widening it.
"""

from __future__ import annotations

import paramiko
from paramiko.common import cMSG_CHANNEL_DATA, cMSG_CHANNEL_EOF, cMSG_CHANNEL_REQUEST


def send_unless_closed(channel: paramiko.Channel, data: bytes) -> bool:
    """Send all of ``data`` (waiting for window as ``sendall`` does); False when the
    channel closed first, so the rest was dropped, as the peer would have dropped it."""
    transport = channel.get_transport()
    view = memoryview(data)
    while view:
        with channel.lock:
            if channel.closed or transport is None:
                return False
            size = channel._wait_for_send_window(len(view))  # type: ignore[attr-defined]
            if size == 0:  # EOF already sent, or closed while waiting for the window
                return False
            message = paramiko.Message()
            message.add_byte(cMSG_CHANNEL_DATA)
            message.add_int(channel.remote_chanid)
            message.add_string(bytes(view[:size]))
            transport._send_user_message(message)  # type: ignore[attr-defined]
        view = view[size:]
    return True


def eof_unless_closed(channel: paramiko.Channel) -> None:
    """Send EOF (``shutdown_write``) unless the channel is closed or EOF was sent."""
    transport = channel.get_transport()
    with channel.lock:
        if channel.closed or channel.eof_sent or transport is None:
            return
        channel.eof_sent = True  # as Paramiko's own EOF does: no DATA after it
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_EOF)
        message.add_int(channel.remote_chanid)
        transport._send_user_message(message)  # type: ignore[attr-defined]


def signal_unless_closed(channel: paramiko.Channel, name: str = "TERM") -> bool:
    """Ask sshd to send signal ``name`` (no "SIG") to the command, unless the channel is
    closed. OpenSSHs sshd (checked on 9.2) answers with ``killpg`` of the command's
    session: the command and everything it started that stayed in its process group.
    Paramiko has no call for this "signal" request (RFC 4254 6.9), hence the message."""
    transport = channel.get_transport()
    with channel.lock:
        if channel.closed or transport is None:
            return False
        message = paramiko.Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string("signal")
        message.add_boolean(False)
        message.add_string(name)
        transport._send_user_message(message)  # type: ignore[attr-defined]
    return True
