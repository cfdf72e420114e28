"""SSH settings read from the inventory's ``connection_options.fabric.extras``.

Defaults are chosen so that nothing hangs forever and nothing is trusted silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubebastion.errors import ConfigError

#: The opt-out is spelled out in full so nobody sets it by accident.
INSECURE_OPT_OUT = "insecure_accept_unknown_host_keys_i_know_the_risk"

_KNOWN_KEYS = {
    "known_hosts",
    "private_key",
    INSECURE_OPT_OUT,
    "connect_timeout",
    "banner_timeout",
    "auth_timeout",
    "command_timeout",
    "gateway",
    "host_name",
}


@dataclass(frozen=True)
class Endpoint:
    """Where one SSH login goes: also the key of the shared-connection pool."""

    hostname: str
    port: int
    username: str


@dataclass(frozen=True)
class SSHSettings:
    known_hosts: Path
    private_key: Path | None
    accept_unknown_host_keys: bool = False
    connect_timeout: float = 10.0
    banner_timeout: float = 10.0
    auth_timeout: float = 10.0
    command_timeout: float = 300.0

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> SSHSettings:
        """Build settings from a host's extras, rejecting typos instead of ignoring them."""
        unknown = sorted(set(extras) - _KNOWN_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown connection_options.fabric.extras key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_KNOWN_KEYS - {'gateway', 'host_name'}))})"
            )
        known_hosts = Path(str(extras.get("known_hosts") or "~/.ssh/known_hosts")).expanduser()
        key = extras.get("private_key")
        opt_out = extras.get(INSECURE_OPT_OUT, False)
        if not isinstance(opt_out, bool):
            raise ConfigError(f"{INSECURE_OPT_OUT} must be true or false, not {opt_out!r}")
        return cls(
            known_hosts=known_hosts,
            private_key=Path(str(key)).expanduser() if key else None,
            accept_unknown_host_keys=opt_out,
            connect_timeout=_seconds(extras, "connect_timeout", 10.0),
            banner_timeout=_seconds(extras, "banner_timeout", 10.0),
            auth_timeout=_seconds(extras, "auth_timeout", 10.0),
            command_timeout=_seconds(extras, "command_timeout", 300.0),
        )


def _seconds(extras: Mapping[str, Any], name: str, default: float) -> float:
    value = extras.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)
