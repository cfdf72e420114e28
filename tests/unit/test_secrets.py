"""The sudo password's wrapper and the log scrubber."""

from __future__ import annotations

import io
import logging

from kubebastion import secrets


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
