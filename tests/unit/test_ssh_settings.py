"""SSH settings, fingerprints and secret redaction: pure logic."""

from __future__ import annotations

import io
import logging
import re
import subprocess
from pathlib import Path

import paramiko
import pytest

from kubebastion import secrets
from kubebastion.errors import ConfigError
from kubebastion.ssh.hostkeys import fingerprint, load_known_hosts
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


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)],
                   check=True)
    expected = subprocess.run(["ssh-keygen", "-lf", str(key_file)], capture_output=True,
                              text=True, check=True).stdout.split()[1]
    assert fingerprint(paramiko.PKey.from_path(key_file)) == expected


def test_known_hosts_is_parsed_once(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    assert load_known_hosts(known) is load_known_hosts(known)


def test_secret_never_shows_itself_and_logs_are_scrubbed() -> None:
    sentinel = "kb-sentinel-Zq81"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    # Nornir logs task arguments on its own logger (which may not propagate to root).
    nornir_logger = logging.getLogger("nornir")
    nornir_logger.addHandler(handler)
    previous_level = nornir_logger.level
    nornir_logger.setLevel(logging.INFO)
    secrets.set_sudo_password(sentinel)
    try:
        value = secrets.sudo_password()
        assert value is not None and value.reveal() == sentinel
        assert sentinel not in repr(value) and sentinel not in str(value)
        secrets.install_log_redaction()
        logging.getLogger("nornir.core").info("task args: %s", {"password": sentinel})
        assert "task args" in stream.getvalue()
        assert sentinel not in stream.getvalue()
        assert secrets.redact(f"x {sentinel} y") == "x *** y"
    finally:
        secrets.set_sudo_password(None)
        nornir_logger.removeHandler(handler)
        nornir_logger.setLevel(previous_level)
