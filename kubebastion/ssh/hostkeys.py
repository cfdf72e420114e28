"""Host key verification: known_hosts parsed once per run, unknown or changed keys refused.

Fabric installs Paramiko's ``AutoAddPolicy``, which trusts whatever key a host presents
the first time. An operator deploying to their own machines wants the opposite: a key
that is not already known is a refusal with the fingerprint to check.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path

import paramiko

from kubebastion.errors import ConfigError, UnknownHostKeyError

_cache: dict[tuple[str, float], paramiko.HostKeys] = {}
_lock = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` form, the one ``ssh-keygen -lf`` prints."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_known_hosts(path: Path) -> paramiko.HostKeys:
    """Parse ``path`` once per modification time; later calls share the parsed object."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        mtime = -1.0
    key = (str(path), mtime)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        host_keys = paramiko.HostKeys()
        if mtime >= 0:
            try:
                host_keys.load(str(path))
            except (OSError, paramiko.SSHException) as exc:
                raise ConfigError(f"cannot read known_hosts file {path}: {exc}") from exc
        _cache[key] = host_keys
        return host_keys


def trust_known_keys(client: paramiko.SSHClient, known: paramiko.HostKeys, hostname: str,
                     port: int) -> None:
    """Give ``client`` the known keys of the host it is about to connect to, under the
    name Paramiko looks up (``[host]:port`` off port 22): only that host's entries are
    copied from the shared parsed file, which is looked up, never re-parsed."""
    name = hostname if port == 22 else f"[{hostname}]:{port}"
    entries = known.lookup(name)
    if entries is None:
        return
    client_keys = client.get_host_keys()
    for key_type in entries:
        client_keys.add(name, key_type, entries[key_type])


class RefuseUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Refuse a host absent from known_hosts, naming it and its fingerprint."""

    def __init__(self, host_name: str, known_hosts: Path) -> None:
        self.host_name = host_name
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKeyError(
            f"{self.host_name}: host key for {hostname} is not in {self.known_hosts} "
            f"({key.get_name()} {fingerprint(key)}). Verify the fingerprint out of band, "
            f"then add it (e.g. `ssh-keyscan -t ed25519 {hostname} >> {self.known_hosts}`)."
        )


class AcceptUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """The explicit opt-out: accept, in memory only, a key we have never seen."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        return None
