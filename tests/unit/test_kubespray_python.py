"""The bastion's Python against the kubespray version's supported controller range."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kubebastion.kubespray.bastion import BastionFacts, facts_command, parse_facts
from kubebastion.kubespray.python import python_problems, release_line, supported_range
from kubebastion.kubespray.venv import parse_state
from kubebastion.ssh.shell import LocalShell


def facts(python: str, venv: bool = True) -> BastionFacts:
    return BastionFacts("/home/u", "u", python, "x86_64", "glibc 2.35", True, venv)


@pytest.mark.parametrize(("version", "line"), [
    ("v2.31.0", "v2.31"), ("2.31.0", "v2.31"), ("v2.31.0-lab", "v2.31"),
    ("release-2.31", "v2.31"), ("kubespray-2.31.0.tar.gz", "v2.31"), ("master", None)],
    ids=["tag", "bare", "lab", "branch", "tarball-name", "no-version"])
def test_release_line(version: str, line: str | None) -> None:
    assert release_line(version) == line


def test_v2_31_needs_python_3_11_to_3_13() -> None:
    assert supported_range("v2.31.0") == ((3, 11), (3, 13))
    assert supported_range("master") is None


@pytest.mark.parametrize("python", ["3.11.2", "3.12.3", "3.13.0"],
                         ids=["debian-12", "ubuntu-24.04", "3.13"])
def test_supported_pythons_pass(python: str) -> None:
    assert python_problems(facts(python), "python3", "v2.31.0") == []


@pytest.mark.parametrize("python", ["3.10.12", "3.14.0", "2.7.18"],
                         ids=["ubuntu-22.04", "too-new", "python2"])
def test_unsupported_pythons_name_the_fix(python: str) -> None:
    problem, = python_problems(facts(python), "python3", "v2.31.0")
    assert problem == (
        f"the bastion's python3 is Python {python}; kubespray v2.31 needs 3.11-3.13 on the "
        "controller (its docs/ansible/ansible.md): install one, e.g. on Ubuntu 22.04 "
        "`sudo apt install python3.11 python3.11-venv`, and set kubespray python: "
        "python3.11 in defaults.yaml")


def test_an_unknown_kubespray_version_is_not_range_checked() -> None:
    assert python_problems(facts("3.10.12"), "python3", "master") == []


def test_missing_interpreter_and_missing_venv_module() -> None:
    missing, = python_problems(facts(""), "python3.11", "v2.31.0")
    assert missing.startswith("python3.11 is not found on the bastion")
    no_venv, = python_problems(facts("3.11.2", venv=False), "python3", "v2.31.0")
    assert no_venv.endswith("install its venv package, e.g. `sudo apt install "
                            "python3.11-venv`")


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


def test_a_venv_made_by_another_python_is_rebuilt() -> None:
    state = parse_state("requirements=abc\nbuilt=abc\nansible=yes\nvenv=yes\nexists=yes\n"
                        "python=3.11.2\n")
    assert state.made_by("3.11.9") and not state.made_by("3.12.3")
    assert parse_state("venv=yes\n").made_by("3.12.3")  # unknown: not a reason by itself


def test_the_venv_is_made_by_the_chosen_interpreter() -> None:
    from kubebastion.kubespray.venv import build_command

    command = build_command("/home/u/venv", "/home/u/kubespray", "abc", None, "b1",
                            "python3.11")
    assert "\npython3.11 -m venv /home/u/venv.kubebastion-b1\n" in command
