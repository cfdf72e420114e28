"""A real socket for an SSH channel, so that ``ssl`` and ``http.client`` can use it.

Two rules keep the shared bastion connection alive, and both come from failures seen in
the lab:

* Never ``select`` on a channel. ``Channel.fileno()`` makes Paramiko create a pipe that
  its transport thread writes a byte to whenever data arrives, and ``Channel.close()``
  closes that pipe without waiting for the writer. When data arrives during the close,
  the transport thread writes to a closed descriptor (EBADF), or to one that a new
  socket has just reused (EPIPE, or a stray byte in someone else's stream). It then dies
  and takes every channel on the connection with it: "connection lost" for every node,
  about one ``fetch-kubeconfig`` in fifteen. So the pump blocks in ``recv`` instead.
* Nothing is sent on a channel after its CLOSE. OpenSSH drops the *whole connection* for
  an EOF or DATA on a freed channel ("packet referred to nonexistent channel"). So only
  one thread sends (data, then the CLOSE), each packet through ``send_unless_closed``
  (the server may end the channel at any time); the other one only receives. A window
  adjust, sent by ``recv``, may follow the CLOSE, and OpenSSH only logs that.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Protocol

import paramiko

from kubebastion.ssh.channel_send import send_unless_closed

_CHUNK = 65536
_ERRORS = (OSError, EOFError, paramiko.SSHException)


class Receiver(Protocol):
    def recv(self, size: int, /) -> bytes: ...


def pump(source: Receiver, sink: socket.socket) -> None:
    """Copy ``source`` (a socket or a channel) to ``sink`` until its end or an error,
    then send EOF on ``sink``."""
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except _ERRORS:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def channel_socket(channel: paramiko.Channel) -> socket.socket:
    """One end of a socket pair whose other end is pumped to and from ``channel``.

    Closing the returned socket closes the channel; the channel's end (the peer closing
    it) shows as EOF on the socket. Neither direction has an idle timeout of its own
    (a ``kubectl get --watch`` through ``invoke tunnel`` may stay quiet for minutes): the
    client's socket carries the timeout it wants.
    """
    ours, theirs = socket.socketpair()
    channel.settimeout(None)
    remaining = [2]  # pump threads still running; the last one closes ``theirs``
    lock = threading.Lock()

    def finish() -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            theirs.close()

    def upstream() -> None:
        """Client to channel; the only thread that sends, so it also sends the CLOSE."""
        try:
            while data := theirs.recv(_CHUNK):
                if not send_unless_closed(channel, data):
                    break  # the server ended the channel: nothing more goes through
        except _ERRORS:
            pass
        finally:
            with contextlib.suppress(*_ERRORS):
                channel.close()  # also ends ``downstream``'s recv
            finish()

    def downstream() -> None:
        """Channel to client; its end becomes EOF on the client's socket."""
        try:
            pump(channel, theirs)
        finally:
            finish()

    for direction in (upstream, downstream):
        threading.Thread(target=direction, daemon=True,
                         name=f"kubebastion-{direction.__name__}").start()
    return ours
