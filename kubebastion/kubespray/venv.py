"""The venv on the bastion with kubespray's own ``requirements.txt``.

The venv carries a marker holding the sha256 of the requirements it was built from; when
the checkout's requirements hash the same and ``ansible-playbook`` is there, nothing is
done. Otherwise the venv is rebuilt from scratch (``venv --clear``: no leftovers from
another ansible), and the marker is written last, so an interrupted build is redone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from kubebastion.errors import StepError
from kubebastion.remote import quote

MARKER = ".kubebastion-requirements.sha256"


@dataclass(frozen=True)
class VenvState:
    requirements_sha256: str  # of the checkout's requirements.txt, "" when absent
    built_from: str  # the venv's marker, "" when none
    has_ansible: bool
    is_venv: bool  # the folder holds a pyvenv.cfg
    exists: bool
    python: str = ""  # the venv's own Python version, "" when unknown

    def made_by(self, python: str) -> bool:
        """Made by that Python minor version (or unknown): a venv made by another one is
        rebuilt when the ``python`` setting changes."""
        return not self.python or self.python.split(".")[:2] == python.split(".")[:2]

    @property
    def up_to_date(self) -> bool:
        return bool(self.requirements_sha256) and self.has_ansible and (
            self.built_from == self.requirements_sha256)


def requirements_path(checkout_dir: str) -> str:
    return str(PurePosixPath(checkout_dir) / "requirements.txt")


def state_command(venv_dir: str, checkout_dir: str) -> str:
    v = PurePosixPath(venv_dir)
    req = quote(requirements_path(checkout_dir))
    return "\n".join([
        f"if [ -f {req} ]; then printf 'requirements=%s\\n' \"$(sha256sum < {req} | "
        "cut -d' ' -f1)\"; fi",
        f"if [ -f {quote(str(v / MARKER))} ]; then printf 'built=%s\\n' "
        f"\"$(cat {quote(str(v / MARKER))})\"; fi",
        f"if [ -x {quote(str(v / 'bin/ansible-playbook'))} ]; then echo ansible=yes; fi",
        f"if [ -f {quote(str(v / 'pyvenv.cfg'))} ]; then echo venv=yes; fi",
        f"if [ -e {quote(venv_dir)} ]; then echo exists=yes; fi",
        f"if [ -x {quote(str(v / 'bin/python3'))} ]; then printf 'python=%s\\n' "
        f"\"$({quote(str(v / 'bin/python3'))} -c 'import sys; "
        "print(\"%d.%d.%d\" % sys.version_info[:3])' 2>/dev/null)\"; fi",
    ])


def parse_state(stdout: str) -> VenvState:
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return VenvState(
        requirements_sha256=values.get("requirements", ""),
        built_from=values.get("built", ""),
        has_ansible=values.get("ansible") == "yes",
        is_venv=values.get("venv") == "yes",
        exists=values.get("exists") == "yes",
        python=values.get("python", ""),
    )


def build_command(venv_dir: str, checkout_dir: str, requirements_sha256: str,
                  find_links: str | None, python: str = "python3") -> str:
    """Create (or clear) the venv and install the requirements, from PyPI or, with
    ``find_links``, only from that folder of wheels."""
    v = PurePosixPath(venv_dir)
    pip = quote(str(v / "bin/pip"))
    offline = f" --no-index --find-links {quote(find_links)}" if find_links else ""
    return "\n".join([
        "set -e",
        f"rm -f {quote(str(v / MARKER))}",
        f"{quote(python)} -m venv --clear {quote(venv_dir)}",
        f"{pip} install --disable-pip-version-check --quiet{offline} "
        f"-r {quote(requirements_path(checkout_dir))}",
        f"printf '%s\\n' {quote(requirements_sha256)} > {quote(str(v / MARKER))}",
    ])


def explain_build_failure(stderr: str) -> str:
    """The operator's next step for the usual ways a venv build fails."""
    text = stderr.lower()
    if "ensurepip is not available" in text or "no module named venv" in text:
        return "python3-venv is missing on the bastion: install it (apt-get install python3-venv)"
    if "no matching distribution" in text or "could not find a version" in text:
        return ("pip found no matching version of kubespray's requirements (an offline "
                "bastion needs --wheelhouse; kubespray v2.31 needs Python 3.11-3.13)")
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


def check_replaceable(state: VenvState, venv_dir: str) -> None:
    """Never ``--clear`` a folder that is not a venv: it may be someone's data."""
    if state.exists and not state.is_venv:
        raise StepError(f"{venv_dir} on the bastion exists but is not a venv (no "
                        "pyvenv.cfg): move it away or set kubespray venv_dir")
