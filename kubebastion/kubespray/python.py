"""Can the bastion's Python run this kubespray's ansible? Checked before anything is sent.

Each kubespray release pins one ansible, which supports a range of controller Pythons
(the table in kubespray's ``docs/ansible/ansible.md``). Outside it, pip fails late with
"No matching distribution found for ansible==...". The range is data, keyed by kubespray
release line; a version we have no range for is not checked (and the report says so).
A Python without ``ensurepip`` (Debian and Ubuntu ship it in ``python3.X-venv``) cannot
make the venv: caught here too.
"""

from __future__ import annotations

import re

from kubebastion.kubespray.bastion import BastionFacts

Version = tuple[int, int]

#: kubespray release line -> (oldest, newest) controller Python, inclusive, from each
#: release's docs/ansible/ansible.md ("Ansible Python Compatibility").
SUPPORTED_PYTHON: dict[str, tuple[Version, Version]] = {
    "v2.31": ((3, 11), (3, 13)),  # ansible==11.13.0, ansible-core >=2.18,<2.19
}
_RELEASE = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)?")


def release_line(version: str) -> str | None:
    """``v2.31.0``, ``2.31.0``, ``v2.31.0-lab``, ``release-2.31`` -> ``v2.31``."""
    match = _RELEASE.search(version)
    return f"v{match.group(1)}.{match.group(2)}" if match else None


def supported_range(version: str) -> tuple[Version, Version] | None:
    line = release_line(version)
    return SUPPORTED_PYTHON.get(line) if line else None


def _text(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def _minor(python: str) -> Version | None:
    parts = python.split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1])


def python_problems(facts: BastionFacts, interpreter: str, kubespray_version: str
                    ) -> list[str]:
    """What stops ``interpreter`` on the bastion from building kubespray's venv; each
    message names the fix."""
    if not facts.python:
        return [f"{interpreter} is not found on the bastion: install a Python kubespray "
                "supports (and its venv package) or set kubespray python to one"]
    problems = []
    limits = supported_range(kubespray_version)
    minor = _minor(facts.python)
    if limits is not None and minor is not None and not limits[0] <= minor <= limits[1]:
        low, high = limits
        newest = _text(high)
        problems.append(
            f"the bastion's {interpreter} is Python {facts.python}; kubespray "
            f"{release_line(kubespray_version)} needs {_text(low)}-{newest} on the "
            "controller (its docs/ansible/ansible.md): install one, e.g. on Ubuntu 22.04 "
            f"`sudo apt install python{_text(low)} python{_text(low)}-venv`, and set "
            f"kubespray python: python{_text(low)} in defaults.yaml")
    if not facts.venv:
        versioned = f"python{_text(minor)}" if minor else "python3"
        problems.append(
            f"the bastion's {interpreter} (Python {facts.python}) cannot create a venv (no "
            f"ensurepip): install its venv package, e.g. `sudo apt install "
            f"{versioned}-venv`")
    return problems
