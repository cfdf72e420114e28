"""Command-line values checked while invoke parses them.

invoke converts an option's value with the type of its default (``int("abc")``), so a bad
value ends in a traceback from deep inside its parser, and a negative timeout passes.
An option annotated with a checked type (``timeout: Seconds = 300``) is converted and
range-checked by that check instead: a bad value ends the run with one line and exit 2,
before the task runs. The annotation's base type stays what invoke's ``--help`` shows
(``-t INT, --timeout=INT``) and what mypy sees.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from invoke.exceptions import Exit
from invoke.parser.argument import Argument
from invoke.tasks import Task
from invoke.tasks import task as invoke_task

#: The exit code of bad usage (bad inventory, bad option): see tasks.py.
USAGE = 2


@dataclass(frozen=True)
class WholeNumber:
    """An integer option's range; ``what`` names it in the message ("a TCP port")."""

    what: str
    low: int
    high: int | None = None

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < self.low or (self.high is not None and value > self.high):
            bound = (f"at least {self.low}" if self.high is None
                     else f"{self.low} to {self.high}")
            raise ValueError(f"must be {self.what}, {bound}")
        return value


Seconds = Annotated[int, WholeNumber("a whole number of seconds", 1)]
Port = Annotated[int, WholeNumber("a TCP port", 1, 65535)]
NodeCount = Annotated[int, WholeNumber("a number of nodes", 0)]
PositiveCount = Annotated[int, WholeNumber("a number of nodes", 1)]


class CheckedArgument(Argument):
    """An invoke ``Argument`` converted by ``check``; a bad value exits with one line."""

    def __init__(self, check: Callable[[str], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def set_value(self, value: Any, cast: bool = True) -> None:
        if not cast:
            super().set_value(value, cast=False)
            return
        try:
            checked = self.check(value)
        except ValueError as exc:
            raise Exit(f"error: {self._flag(value)}: {exc}{self._example()}", USAGE) from None
        self.raw_value = value
        self._value = checked

    def _flag(self, value: object) -> str:
        return f"--{self.names[0]}={value}"

    def _example(self) -> str:
        """The default as an example of a good value, when it is one."""
        try:
            self.check(str(self.default))
        except ValueError:
            return ""
        return f" (e.g. {self._flag(self.default)})"


def option_checks(body: Callable[..., Any]) -> dict[str, Callable[[str], Any]]:
    """The check of each parameter of ``body`` annotated ``Annotated[T, check]``."""
    try:
        hints = typing.get_type_hints(body, include_extras=True)
    except (NameError, TypeError):  # an annotation only a type checker can resolve:
        return {}  # tests/unit/test_options.py then says which option went unchecked
    checks = {}
    for name, hint in hints.items():
        for extra in getattr(hint, "__metadata__", ()):
            if callable(extra):
                checks[name] = extra
    return checks


class CheckedTask(Task[Any]):
    """An invoke ``Task`` whose annotated options are checked as they are parsed."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        """invoke picks a short flag from the first letter of the name not yet taken; when
        none is left it picks the dash of ``skip-tags``, a flag spelled ``--``. Then the
        option has no short flag."""
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        opts["names"] = [n for n in opts["names"] if len(n) > 1 or n.isalnum()]
        return opts

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        checks = option_checks(self.body)
        arguments = []
        for argument in super().get_arguments(ignore_unknown_help):
            check = checks.get(argument.name or "")
            if check is not None:
                argument = CheckedArgument(
                    check, names=argument.names, kind=argument.kind,
                    default=argument.default, help=argument.help,
                    positional=argument.positional, optional=argument.optional,
                    incrementable=argument.incrementable, attr_name=argument.attr_name)
            arguments.append(argument)
        return arguments


def task(**kwargs: Any) -> Callable[[Callable[..., Any]], CheckedTask]:
    """``invoke.task(...)`` making ``CheckedTask`` objects."""
    make: Callable[[Callable[..., Any]], CheckedTask] = invoke_task(klass=CheckedTask, **kwargs)
    return make
