"""SSH settings: defaults that verify host keys and bound every wait; bad ones refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubebastion.errors import ConfigError
from kubebastion.ssh.settings import INSECURE_OPT_OUT, SSHSettings


def test_defaults_verify_host_keys_and_bound_every_wait() -> None:
    settings = SSHSettings.from_extras({})
    assert settings.accept_unknown_host_keys is False
    assert settings.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert 0 < settings.connect_timeout <= 30 and 0 < settings.banner_timeout <= 30
    assert settings.command_timeout > 0


@pytest.mark.parametrize(
    ("extras", "message"),
    [({"known_host": "x"}, "unknown connection_options.fabric.extras key(s): known_host"),
     ({INSECURE_OPT_OUT: "yes"}, "must be true or false"),
     ({"connect_timeout": 0}, "connect_timeout must be a positive number"),
     ({"banner_timeout": "10"}, "banner_timeout must be a positive number")],
    ids=["typo", "opt-out-not-bool", "zero-timeout", "string-timeout"],
)
def test_bad_settings_are_refused(extras: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        SSHSettings.from_extras(extras)
