"""The cluster lock's pure parts: the holder script, its answer, the loser's message.
(Two real runs racing for it: tests/reliability/test_interrupts.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubebastion.runlock import (
    HELD_CODE,
    Holder,
    describe_held,
    holder_script,
    parse_holder_output,
)

HOLDER = Holder("laptop", "alice", 4242, "deploy", "2026-11-29T16:31:20Z")


def test_holder_round_trips_through_json() -> None:
    assert Holder.parse(HOLDER.to_json()) == HOLDER
    assert Holder.parse("not json") is None
    assert Holder.parse('{"host": "x"}') is None


@pytest.mark.parametrize(("stdout", "expected"), [
    ("locked\n", (True, None)),
    (f"held {HOLDER.to_json()}\n", (False, HOLDER)),
    ("held \n", (False, None)),
    ("", (False, None)),
    ("sh: flock: not found\n", (False, None)),
], ids=["locked", "held-with-details", "held-before-details", "nothing", "no-flock"])
def test_parse_holder_output(stdout: str, expected: tuple[bool, Holder | None]) -> None:
    assert parse_holder_output(stdout) == expected


def test_the_losers_message_is_one_line_naming_who_holds_it() -> None:
    text = describe_held("lab", "bastion", HOLDER)
    assert "\n" not in text
    for part in ("lab", "`deploy`", "alice@laptop", "pid 4242", "2026-11-29T16:31:20Z",
                 "~/.kubebastion/locks/lab.lock on bastion", "nothing was changed"):
        assert part in text
    assert "has not written its details" in describe_held("lab", "bastion", None)


def test_two_holders_on_one_machine_the_second_is_refused_with_the_firsts_details(
        tmp_path: Path) -> None:
    """The script itself, run by the local shell against a temporary $HOME."""
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    first = subprocess.Popen(["/bin/sh", "-c", holder_script("lab", HOLDER)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None and first.stdin is not None
    try:
        assert first.stdout.readline() == "locked\n"
        other = Holder("ci", "bob", 7, "nat", "2026-11-29T16:32:00Z")
        second = subprocess.run(["/bin/sh", "-c", holder_script("lab", other)], env=env,
                                input="", capture_output=True, text=True, timeout=10,
                                check=False)
        assert second.returncode == HELD_CODE
        assert parse_holder_output(second.stdout) == (False, HOLDER)
    finally:
        first.stdin.close()
        first.wait(10)
    third = subprocess.run(["/bin/sh", "-c", holder_script("lab", HOLDER)], env=env,
                           input="", capture_output=True, text=True, timeout=10, check=False)
    assert third.returncode == 0 and third.stdout == "locked\n"
    assert (tmp_path / ".kubebastion/locks/lab.lock").read_text() == ""
