"""How every command starts its run and ends: one message and an exit code, never a
traceback (0 success, 1 a step failed, 2 bad inventory or usage, 130 Ctrl-C)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from kubebastion import interrupt, secrets
from kubebastion.errors import ConfigError, InventoryError, KubeBastionError
from kubebastion.runtime import Run, build_run
from kubebastion.ui.console import print_json

F = TypeVar("F", bound=Callable[..., Any])
#: The collection's configuration section (``Collection.configure``): ``command`` is how
#: the operator runs these tasks, for the messages that name a command to run next.
CONFIG_SECTION = "kubebastion"
DEFAULT_COMMAND = "invoke"
FAILED_CODE = 1
USAGE_CODE = 2


def command_name(c: Context) -> str:
    """``invoke`` in a checkout or a user's own tasks.py, ``kubebastion`` from the
    console command: what the operator types before a task's name."""
    section = c.config.get(CONFIG_SECTION) or {}
    return str(section.get("command") or DEFAULT_COMMAND)


def exit_for(exc: KubeBastionError) -> Exit:
    """The message and exit code an error ends a task with: 2 for bad inventory or usage,
    1 for a failure on the hosts."""
    code = USAGE_CODE if isinstance(exc, (InventoryError, ConfigError)) else FAILED_CODE
    return Exit(secrets.redact(f"error: {exc}"), code)


def exits_cleanly(func: F) -> F:
    """Our errors end a task with a message and an exit code, never a traceback; Ctrl-C
    stops what runs on the hosts and says so in one line (exit 130)."""

    @functools.wraps(func)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> Any:
        try:
            with interrupt.handling_interrupts():
                return func(c, *args, **kwargs)
        except KeyboardInterrupt:
            typed = f"{command_name(c)} {func.__name__.replace('_', '-')}"
            raise Exit(interrupt.summary(typed), interrupt.INTERRUPTED_CODE) from None
        except KubeBastionError as exc:
            raise exit_for(exc) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def opened_run(config: str, *, dry_run: bool = False, ask_sudo_password: bool = False
               ) -> Iterator[Run]:
    """The run a task works on, the sudo password asked for first when wanted; every
    connection is closed at the end, whatever happened."""
    if ask_sudo_password:
        secrets.prompt_sudo_password()
    with build_run(config, dry_run=dry_run) as run:
        yield run


def finish(document: Any, as_json: bool, show: Callable[[], None],
           failure: str | None) -> None:
    """The one way a task ends: the JSON document or the human display, then exit 1 with
    ``failure`` (one line per failed host) when there is one."""
    if as_json:
        print_json(document)
    else:
        show()
    if failure:
        raise Exit(failure, FAILED_CODE)
