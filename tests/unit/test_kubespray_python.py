"""The bastion's Python against the kubespray version's supported controller range."""

from __future__ import annotations

import pytest

from kubebastion.kubespray.bastion import BastionFacts
from kubebastion.kubespray.python import python_problems, release_line, supported_range


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
