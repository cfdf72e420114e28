"""The Nornir connection plugin ``fabric``: one verified SSH login per host per run.

Nodes behind the bastion are reached over ``direct-tcpip`` channels of one shared
connection to the bastion (channels, not a new login per node: the bastion's sshd
``MaxStartups`` would drop logins at scale). That shared connection is also the bastion's
own connection, so every host sees exactly one login. Connections are reference counted
and the bastion's closes last. The pool belongs to the run (``pool_of``): two runs in one
process share no connection, and closing one leaves the other's open.

Why not Fabric's own ``gateway=`` and ``forward_local`` (as in fabric 3.2.3's source; this
is the one place that says so):

* ``gateway=``: every node's ``Connection.open_gateway`` calls ``gateway.open()`` with no
  lock, so 61 threads race to log in to the bastion (several logins; the ones not kept
  are never closed) and a dead bastion is tried again by every node; the
  ``direct-tcpip`` channel opens with no deadline; a handshake cut by the tunnel surfaces
  as a bare ``EOFError``. Closing a node's connection closes its tunnel channel, and
  Paramiko sends that EOF/CLOSE outside the channel's lock: when the bastion's sshd had
  already freed the channel, OpenSSH dropped the *whole* bastion connection and every
  other node failed with ``EOFError`` (seen in the lab with 61 nodes). Here the
  channel comes from ``open_tunnel`` (deadline, named errors), the bastion connection
  from the pool (one login, one failure shared by its waiters), and nothing is closed
  before the run ends, jump hosts first (``ConnectionPool.close_all``).
* ``forward_local``: its ``Tunnel`` threads ``select`` on the channel and ``sendall`` to
  it. ``select`` makes Paramiko create the channel's pipe, whose close races the
  transport thread and killed the bastion connection (about one ``fetch-kubeconfig`` in
  fifteen: ``channel_socket``); ``sendall`` may send after the channel's CLOSE, which
  OpenSSH answers by dropping the connection (``channel_send``). Its listener also polls
  ``accept`` every 10 ms. ``channel_socket`` and ``tunnel`` do the same job within those
  two rules.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fabric
import paramiko
from nornir.core.configuration import Config as NornirConfig

from kubebastion.errors import (
    AuthenticationError,
    HostKeyChangedError,
    SSHError,
)
from kubebastion.runstate import CONNECTIONS, run_state
from kubebastion.ssh.hostkeys import (
    AcceptUnknownHostKey,
    RefuseUnknownHostKey,
    fingerprint,
    load_known_hosts,
    trust_known_keys,
)
from kubebastion.ssh.keys import default_key_file, load_private_key
from kubebastion.ssh.settings import Endpoint, SSHSettings

CONNECTION_NAME = "fabric"

# Lazy: do not read /etc/fabric.yaml or ~/.ssh/config behind the inventory's back.
_FABRIC_CONFIG = fabric.Config(
    lazy=True,
    ssh_config=paramiko.SSHConfig(),
    overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}},
)


class Connection(fabric.Connection):  # type: ignore[misc]  # fabric has no type hints
    """Fabric's connection, with an SFTP session that can be dropped without waiting.

    Fabric keeps one SFTP session per connection and forgets it only in ``close()``. An
    upload stalled on a cut link must fail at its deadline and leave the session behind
    (closing it gracefully would wait out another deadline), and the next transfer must
    open a fresh one: so the session is ours, not Fabric's ``sftp()`` cache.
    """

    # On the class: invoke's DataProxy turns setting an attribute that the class does not
    # have into a config write.
    _session: paramiko.SFTPClient | None = None

    def sftp(self) -> paramiko.SFTPClient:
        if self._session is None:
            self._session = self.client.open_sftp()
        return self._session

    def drop_sftp(self) -> None:
        """Forget the SFTP session and close its channel, without waiting for the host."""
        session, self._session = self._session, None
        channel = session.get_channel() if session is not None else None
        if channel is not None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                channel.close()

    def close(self) -> None:
        self.drop_sftp()
        super().close()


@dataclass
class _Shared:
    connection: fabric.Connection | None = None
    refs: int = 0
    #: Why connecting failed, for the threads that were already waiting on the same
    #: endpoint: they fail at once instead of each retrying (61 hosts behind a dead
    #: bastion would otherwise take 61 connect timeouts, one after the other). A caller
    #: that arrives after the failure tries again (``generation``).
    error: SSHError | None = None
    error_generation: int = -1
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ConnectionPool:
    """Open connections keyed by endpoint, shared and reference counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Endpoint, _Shared] = {}

    def acquire(
        self, endpoint: Endpoint, connect: Callable[[], fabric.Connection]
    ) -> fabric.Connection:
        with self._lock:
            entry = self._entries.setdefault(endpoint, _Shared())
            entry.refs += 1
            arrived = entry.generation
        try:
            with entry.lock:  # one thread connects, the others wait and share
                if entry.error is not None and entry.error_generation == arrived:
                    raise SSHError(str(entry.error))
                if entry.connection is None or not entry.connection.is_connected:
                    try:
                        entry.connection = connect()
                    except SSHError as exc:
                        with self._lock:  # later arrivals get a new generation
                            entry.error, entry.error_generation = exc, entry.generation
                            entry.generation += 1
                        raise
                return entry.connection
        except BaseException:
            self.release(endpoint)
            raise

    def release(self, endpoint: Endpoint) -> None:
        with self._lock:
            entry = self._entries.get(endpoint)
            if entry is None:
                return
            entry.refs -= 1
            if entry.refs > 0:
                return
            del self._entries[endpoint]
        _close_quietly(entry.connection)

    def close_all(self) -> None:
        """Close every connection, jump hosts first: closing a node's channel after the
        end of a run can race the teardown of the bastion connection it runs over."""
        with self._lock:
            entries = list(self._entries.items())
        direct = [e for k, e in entries if "@via:" not in k.hostname]
        tunneled = [e for k, e in entries if "@via:" in k.hostname]
        for entry in direct + tunneled:
            _close_quietly(entry.connection)

    def open_count(self) -> int:
        with self._lock:
            return len(self._entries)


def pool_of(configuration: NornirConfig) -> ConnectionPool:
    """The pool of the run whose Nornir config this is (see ``kubebastion.runstate``)."""
    return run_state(configuration, CONNECTIONS, ConnectionPool)


def _close_quietly(connection: fabric.Connection | None) -> None:
    """Closing at the end of a run never fails it: a node's SFTP session over a bastion
    connection that is already gone raises EOFError, and there is nothing left to do."""
    if connection is None:
        return
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        connection.close()


class TunnelSocket:
    """A tunnel channel as the socket of the node's connection, closed without an error.

    Paramiko's transport thread closes its socket as the connection ends. For a tunnel
    that sends the channel's EOF and CLOSE over the jump host's connection, and when that
    connection is being closed at the same moment (a run ends: the jump host's connection
    closes first), the send raised ``EOFError`` in the node's transport thread, which died
    on it: an unhandled exception in a thread, seen after ``sshd`` was killed under a
    command (``tests/reliability/test_command_faults.py``). With the jump host's
    connection gone there is nothing left to close, so this close never raises.
    """

    def __init__(self, channel: paramiko.Channel) -> None:
        self.channel = channel

    def send(self, data: bytes) -> int:
        return self.channel.send(data)

    def recv(self, size: int) -> bytes:
        return self.channel.recv(size)

    def settimeout(self, timeout: float | None) -> None:
        self.channel.settimeout(timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.channel.close()

    @property
    def _closed(self) -> bool:
        """Part of the socket interface Paramiko expects (``Transport.stop_thread`` reads
        it; its own ``Channel`` and ``ProxyCommand`` have it too)."""
        return bool(self.channel.closed)


def connect(
    endpoint: Endpoint,
    settings: SSHSettings,
    host_name: str,
    sock: paramiko.Channel | None = None,
) -> fabric.Connection:
    """Open one verified connection; every failure becomes an ``SSHError`` naming the host."""
    key_path = settings.private_key or default_key_file()
    connect_kwargs: dict[str, Any] = {
        "look_for_keys": False,
        "allow_agent": key_path is None,
        "banner_timeout": settings.banner_timeout,
        "auth_timeout": settings.auth_timeout,
        "channel_timeout": settings.connect_timeout,
    }
    if key_path is not None:
        connect_kwargs["pkey"] = load_private_key(key_path)
    if sock is not None:
        connect_kwargs["sock"] = TunnelSocket(sock)
    conn = Connection(
        endpoint.hostname,
        user=endpoint.username,
        port=endpoint.port,
        # A clone each: Fabric's Connection writes into its config, and threads share ours.
        config=_FABRIC_CONFIG.clone(),
        connect_timeout=max(1, round(settings.connect_timeout)),
        connect_kwargs=connect_kwargs,
    )
    policy: paramiko.MissingHostKeyPolicy
    if settings.accept_unknown_host_keys:
        policy = AcceptUnknownHostKey()
    else:
        policy = RefuseUnknownHostKey(host_name, settings.known_hosts)
    conn.client.set_missing_host_key_policy(policy)
    trust_known_keys(conn.client, load_known_hosts(settings.known_hosts),
                     endpoint.hostname, endpoint.port)
    where = f"{host_name} ({endpoint.username}@{endpoint.hostname}:{endpoint.port})"
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        raise HostKeyChangedError(
            f"{where}: HOST KEY CHANGED. known_hosts ({settings.known_hosts}) has "
            f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, the host "
            f"presented {exc.key.get_name()} {fingerprint(exc.key)}. Refusing to connect: "
            "if the host was really reinstalled, verify the new key and update known_hosts."
        ) from None
    except paramiko.AuthenticationException as exc:
        key_desc = str(key_path) if key_path else "ssh-agent keys"
        raise AuthenticationError(
            f"{where}: authentication failed for user {endpoint.username!r} with {key_desc} "
            f"({exc}). Check the user and that the key is in its authorized_keys."
        ) from None
    except TimeoutError as exc:
        raise SSHError(
            f"{where}: timed out connecting ({settings.connect_timeout:g} s): {exc}"
        ) from None
    except paramiko.SSHException as exc:
        transport = conn.client.get_transport()
        if transport is not None and not transport.remote_version:
            # Paramiko's own message depends on which thread noticed first ("Error
            # reading SSH protocol banner" or "No existing session"): say what happened.
            raise SSHError(
                f"{where}: no SSH banner within {settings.banner_timeout:g} s (banner "
                f"timeout): is sshd listening on port {endpoint.port}? ({exc})"
            ) from None
        raise SSHError(f"{where}: SSH negotiation failed: {exc}") from None
    except OSError as exc:
        raise SSHError(f"{where}: cannot connect: {exc}") from None
    except EOFError:
        through = " (the tunnel through the jump host closed)" if sock is not None else ""
        raise SSHError(f"{where}: the connection closed during the SSH handshake{through}"
                       ) from None
    transport = conn.client.get_transport()
    if transport is not None:
        transport.set_keepalive(15)
    return conn


def gateway_alive(gateway: fabric.Connection) -> bool:
    transport = gateway.client.get_transport()
    return transport is not None and transport.is_active()


def why_gateway_died(gateway: fabric.Connection) -> str:
    """What ended the jump host's connection, as far as Paramiko knows."""
    transport = gateway.client.get_transport()
    error = getattr(transport, "saved_exception", None) if transport is not None else None
    if error is None or isinstance(error, EOFError):
        return "the jump host closed it"
    return f"{type(error).__name__}: {error}"


def open_tunnel(
    gateway: fabric.Connection, gateway_name: str, target: Endpoint, host_name: str,
    timeout: float,
) -> paramiko.Channel:
    """A ``direct-tcpip`` channel from the bastion to ``target``, bounded by ``timeout``."""
    transport = gateway.client.get_transport()
    if transport is None or not transport.is_active():
        raise SSHError(f"{host_name}: connection to jump host {gateway_name} is closed")
    try:
        channel: paramiko.Channel = transport.open_channel(
            "direct-tcpip",
            dest_addr=(target.hostname, target.port),
            src_addr=("", 0),
            timeout=timeout,
        )
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise SSHError(
            f"{host_name}: jump host {gateway_name} cannot reach "
            f"{target.hostname}:{target.port}: {exc or type(exc).__name__}"
        ) from None
    return channel


class FabricConnection:
    """Nornir ``ConnectionPlugin`` around ``fabric.Connection`` (see module docstring)."""

    def __init__(self) -> None:
        self.connection: fabric.Connection | None = None
        self._pool = ConnectionPool()
        self._endpoint: Endpoint | None = None
        self._gateway: Endpoint | None = None

    def open(
        self,
        hostname: str | None,
        username: str | None,
        password: str | None,
        port: int | None,
        platform: str | None,
        extras: dict[str, Any] | None = None,
        configuration: NornirConfig | None = None,
    ) -> None:
        extras = dict(extras or {})
        if configuration is not None:  # Nornir always passes it; a bare open() keeps its own
            self._pool = pool_of(configuration)
        pool = self._pool
        gateway_info: dict[str, Any] | None = extras.pop("gateway", None)
        host_name = str(extras.pop("host_name", hostname))
        settings = SSHSettings.from_extras(extras)
        endpoint = Endpoint(str(hostname), int(port or 22), str(username or ""))
        if gateway_info is None:
            self.connection = pool.acquire(
                endpoint, lambda: connect(endpoint, settings, host_name)
            )
            self._endpoint = endpoint
            return
        gateway = Endpoint(
            str(gateway_info["hostname"]),
            int(gateway_info.get("port") or 22),
            str(gateway_info.get("username") or username or ""),
        )
        gateway_name = str(gateway_info.get("name", gateway.hostname))
        gateway_conn = pool.acquire(
            gateway, lambda: connect(gateway, settings, gateway_name)
        )
        self._gateway = gateway
        try:
            def via_gateway() -> fabric.Connection:
                sock = open_tunnel(
                    gateway_conn, gateway_name, endpoint, host_name, settings.connect_timeout
                )
                try:
                    return connect(endpoint, settings, host_name, sock=sock)
                except SSHError as exc:
                    if gateway_alive(gateway_conn):
                        raise
                    raise SSHError(f"{host_name}: the connection to jump host "
                                   f"{gateway_name} was lost while connecting: "
                                   f"{why_gateway_died(gateway_conn)} ({exc})") from None

            # Keyed apart from a direct login to the same address.
            tunneled = Endpoint(f"{endpoint.hostname}@via:{gateway.hostname}",
                                endpoint.port, endpoint.username)
            self.connection = pool.acquire(tunneled, via_gateway)
            self._endpoint = tunneled
        except BaseException:
            pool.release(gateway)
            self._gateway = None
            raise

    def close(self) -> None:
        if self._endpoint is not None:
            self._pool.release(self._endpoint)
            self._endpoint = None
        if self._gateway is not None:
            self._pool.release(self._gateway)
            self._gateway = None
        self.connection = None
