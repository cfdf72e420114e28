"""The bastion's facts: the command run for real in a local shell, and its parser."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kubebastion.errors import StepError
from kubebastion.kubespray.bastion import FACTS_COMMAND, facts_command, parse_facts
from kubebastion.ssh.shell import LocalShell

SHELL = LocalShell("bastion", 120)


def test_facts_from_this_machine() -> None:
    facts = parse_facts(SHELL.run(FACTS_COMMAND).stdout)
    assert facts.home.startswith("/") and facts.python.startswith("3.")
    assert facts.python_minor.count(".") == 1 and facts.machine and facts.git


def test_facts_errors() -> None:
    assert parse_facts("home=/home/u\npython=\n").python == ""  # kubespray.python says so
    with pytest.raises(StepError, match="home folder"):
        parse_facts("python=3.11.2\n")


def write_script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_facts_come_from_the_chosen_interpreter(tmp_path: Path) -> None:
    """What a wrapper of python3 reports is what the check sees (the lab test's trick),
    and an interpreter without ensurepip is told apart."""
    shell = LocalShell("bastion", 60)
    fake = write_script(tmp_path / "py310", "#!/bin/sh\nif [ \"$1\" = - ]; then python3 - | "
                        "sed 's/^python=.*/python=3.10.12/'; exit; fi\nexec python3 \"$@\"\n")
    seen = parse_facts(shell.run(facts_command(fake)).stdout)
    assert (seen.python, seen.venv) == ("3.10.12", True)
    broken = write_script(tmp_path / "py-no-venv", "#!/bin/sh\ncase \"$*\" in *ensurepip*) "
                          "exit 1;; esac\nexec python3 \"$@\"\n")
    assert parse_facts(shell.run(facts_command(broken)).stdout).venv is False
    absent = parse_facts(shell.run(facts_command(str(tmp_path / "nope"))).stdout)
    assert absent.python == ""
