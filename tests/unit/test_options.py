"""Command-line options: every task's options show their kind of value in ``--help``, and
a checked option turns a bad value into one line and exit 2 while invoke parses it."""

from __future__ import annotations

import pytest
from invoke.exceptions import Exit
from invoke.parser.argument import Argument

import tasks
from kubebastion.options import CheckedArgument, Port, Seconds, WholeNumber, option_checks


def all_arguments() -> list[tuple[str, Argument]]:
    found = []
    for context in tasks.namespace.to_contexts():
        found += [(context.name, arg) for arg in context.args.values()]
    return found


def test_every_option_that_takes_a_value_shows_its_kind_in_help() -> None:
    """``-t, --timeout`` (a float default) looked like a flag."""
    missing = []
    for context in tasks.namespace.to_contexts():
        for flag, arg in context.flags.items():
            if arg.kind is bool or not flag.startswith("--"):
                continue
            spec, _ = context.help_for(flag)
            if "=" not in spec:
                missing.append(f"{context.name} {spec}")
    assert not missing, missing


def test_short_flags_are_letters_or_digits() -> None:
    """invoke gave ``kubespray --skip-tags`` the short flag ``-`` (shown as ``--=STRING``)
    once every letter of its name was taken."""
    odd = [f"{task} {names}" for task, arg in all_arguments()
           for names in [arg.names] if any(len(n) == 1 and not n.isalnum() for n in names)]
    assert not odd, odd


def test_every_number_option_is_checked() -> None:
    unchecked = [f"{task} --{arg.names[0]}" for task, arg in all_arguments()
                 if arg.kind in (int, float) and not isinstance(arg, CheckedArgument)]
    assert not unchecked, unchecked


@pytest.mark.parametrize(("check", "text", "expected"), [
    (WholeNumber("a whole number of seconds", 1), "300", 300),
    (WholeNumber("a TCP port", 1, 65535), "65535", 65535),
    (WholeNumber("a number of nodes", 0), "0", 0),
], ids=["seconds", "highest port", "zero nodes"])
def test_whole_numbers_in_range_pass(check: WholeNumber, text: str, expected: int) -> None:
    assert check(text) == expected


@pytest.mark.parametrize(("check", "text", "words"), [
    (WholeNumber("a whole number of seconds", 1), "abc", "a whole number of seconds, at least 1"),
    (WholeNumber("a whole number of seconds", 1), "-5", "at least 1"),
    (WholeNumber("a whole number of seconds", 1), "1.5", "whole number"),
    (WholeNumber("a TCP port", 1, 65535), "99999", "a TCP port, 1 to 65535"),
    (WholeNumber("a TCP port", 1, 65535), "0", "1 to 65535"),
], ids=["letters", "negative", "fraction", "port too high", "port zero"])
def test_bad_whole_numbers_say_what_is_wanted(check: WholeNumber, text: str,
                                              words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check(text)


def _sample(timeout: Seconds = 300, port: Port = 16443, name: str = "") -> None:
    """A task body with two checked options and one plain one."""


def test_checks_come_from_the_annotations() -> None:
    assert set(option_checks(_sample)) == {"timeout", "port"}


def test_a_bad_value_exits_2_with_one_line_naming_the_option_and_an_example() -> None:
    arg = CheckedArgument(WholeNumber("a whole number of seconds", 1), names=("timeout", "t"),
                          kind=int, default=300)
    with pytest.raises(Exit) as caught:
        arg.set_value("-5")
    assert caught.value.code == 2
    assert caught.value.message == ("error: --timeout=-5: must be a whole number of seconds, "
                                    "at least 1 (e.g. --timeout=300)")
    arg.set_value("45")
    assert arg.value == 45
