"""Nornir's log file, set up by kubebastion once per run instead of by ``InitNornir``.

Nornir's own set-up (``LoggingConfig.configure``) is made for a program that owns the
process. It warns (``ConflictingConfigurationWarning``) whenever the root logger has a
handler, which every host program does that configures logging (pytest's log capture
among them), though the ``nornir`` logger does not propagate there; and it adds its file
handler only while the ``nornir`` logger has none, so the second run in one process (a
test suite, a user's script) kept writing to the first run's file. So ``InitNornir`` gets
its logging turned off and the same settings are applied here (``log_file``, ``level``,
``format``, ``to_console``, ``loggers``, the ``NORNIR_LOGGING_*`` variables, Nornir's
defaults): the file created 0600 before it is opened, each run's handlers replacing the
previous run's, secrets scrubbed from every record.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nornir.core.configuration import LoggingConfig

from kubebastion.atomic_file import touch_private
from kubebastion.errors import ConfigError
from kubebastion.secrets import install_log_redaction

_ROTATE_BYTES = 10 * 1024 * 1024  # as Nornir's own file handler
_ROTATE_COUNT = 20


class _RunHandler(logging.Handler):
    """Marks the handlers installed here, so that the next run replaces them."""


class _RunFileHandler(logging.handlers.RotatingFileHandler, _RunHandler):
    pass


class _RunStreamHandler(logging.StreamHandler, _RunHandler):  # type: ignore[type-arg]
    pass


def configure(settings: Any) -> Any:
    """Apply a Nornir config's ``logging`` section; returns the section to hand to
    ``InitNornir`` in its place (the same, with Nornir's own set-up off)."""
    if not isinstance(settings, Mapping):
        return settings  # InitNornir says what is wrong
    try:
        config = LoggingConfig(**settings)
    except TypeError:
        return settings  # not Nornir's keys: InitNornir says what is wrong
    handlers = _handlers(config) if config.enabled else []
    for name in config.loggers:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _RunHandler)]:
            logger.removeHandler(old)
            old.close()
        if not config.enabled:
            continue
        logger.propagate = False
        logger.setLevel(config.level)
        for handler in handlers:
            logger.addHandler(handler)
    install_log_redaction()
    return {**settings, "enabled": False}


def _handlers(config: LoggingConfig) -> list[logging.Handler]:
    formatter = logging.Formatter(config.format)
    handlers: list[logging.Handler] = []
    if config.log_file:
        path = Path(config.log_file)
        try:
            touch_private(path)
            handlers.append(_RunFileHandler(path, maxBytes=_ROTATE_BYTES,
                                            backupCount=_ROTATE_COUNT))
        except OSError as exc:
            raise ConfigError(f"cannot open Nornir's log file {path}: "
                              f"{exc.strerror or exc} (set logging.log_file)") from None
    if config.to_console:
        stdout = _RunStreamHandler(sys.stdout)
        stdout.setLevel(logging.DEBUG)
        stdout.addFilter(lambda record: record.levelno <= logging.INFO)
        stderr = _RunStreamHandler(sys.stderr)
        stderr.setLevel(logging.WARNING)
        handlers += [stdout, stderr]
    for handler in handlers:
        handler.setFormatter(formatter)
    return handlers
