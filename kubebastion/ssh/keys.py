"""Private keys loaded once per run: an RSA key load costs about 100 ms of CPU, and a run
opens one connection per host from many threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import paramiko

from kubebastion.errors import ConfigError

DEFAULT_KEY_FILES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
PASSPHRASE_ENV = "KUBEBASTION_KEY_PASSPHRASE"  # noqa: S105 - a variable name

_cache: dict[tuple[str, float], paramiko.PKey] = {}
_lock = threading.Lock()


def default_key_file() -> Path | None:
    """The first of OpenSSH's usual key files that exists, if any."""
    for candidate in DEFAULT_KEY_FILES:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    return None


def load_private_key(path: Path) -> paramiko.PKey:
    """Load ``path`` (any type Paramiko knows) once; the passphrase comes from the env."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError as exc:
        raise ConfigError(f"private key {path} does not exist (set private_key)") from exc
    cache_key = (str(path), mtime)
    with _lock:
        cached = _cache.get(cache_key)
        if cached is not None:
            return cached
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
        try:
            key = paramiko.PKey.from_path(path, password=passphrase)
        except paramiko.PasswordRequiredException as exc:
            raise ConfigError(
                f"private key {path} is encrypted: set {PASSPHRASE_ENV} or use ssh-agent"
            ) from exc
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise ConfigError(f"cannot load private key {path}: {exc}") from exc
        _cache[cache_key] = key
        return key
