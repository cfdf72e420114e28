"""The sudo password: where it comes from and how it is kept out of every output.

It is never a task argument (Nornir logs task arguments at INFO) and never part of a
command line (visible in ``ps``); it travels only on a command's stdin.
"""

from __future__ import annotations

import getpass
import logging
import os
import threading
import warnings

from kubebastion.errors import ConfigError

SUDO_PASSWORD_ENV = "KUBEBASTION_SUDO_PASSWORD"  # noqa: S105 - a variable name

_lock = threading.Lock()
_password: str | None = None
_loaded = False


class Secret:
    """A string that refuses to show itself in reprs, logs and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def set_sudo_password(value: str | None) -> None:
    """Set the password for this process (e.g. after an interactive prompt); ``None``
    forgets it, so the environment is read again next time."""
    global _password, _loaded
    with _lock:
        _password = value or None
        _loaded = value is not None
        if _password:
            _REDACTOR.add(_password)


def prompt_sudo_password() -> None:
    """Ask once on the terminal; used by ``--ask-sudo-password``. Without a terminal
    getpass would read stdin with echo on (a warning) and end in ``EOFError``: refuse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", getpass.GetPassWarning)
            password = getpass.getpass("sudo password: ")
    except (getpass.GetPassWarning, EOFError):
        raise ConfigError(f"--ask-sudo-password: no terminal to ask on, or the input ended; "
                          f"set {SUDO_PASSWORD_ENV} instead") from None
    set_sudo_password(password)


def sudo_password() -> Secret | None:
    """The password from ``set_sudo_password`` or ``$KUBEBASTION_SUDO_PASSWORD``, if any."""
    global _password, _loaded
    with _lock:
        if not _loaded:
            _password = os.environ.get(SUDO_PASSWORD_ENV) or None
            _loaded = True
            if _password:
                _REDACTOR.add(_password)
        return Secret(_password) if _password else None


def redact(text: str) -> str:
    """Replace every known secret in ``text``; the last line of defence for outputs."""
    return _REDACTOR.redact(text)


class _Redactor(logging.Filter):
    """A logging filter that scrubs known secrets from every record it sees."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg = self.redact(record.getMessage())
            record.args = None
        return True


_REDACTOR = _Redactor()


def install_log_redaction() -> None:
    """Attach the redactor to every handler of the root and nornir loggers."""
    for name in ("", "nornir", "kubebastion", "paramiko"):
        for handler in logging.getLogger(name).handlers:
            if _REDACTOR not in handler.filters:
                handler.addFilter(_REDACTOR)
