"""The check step's command, run here in a local shell, and its parser on captured output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubebastion.check import check_command, parse_check_output


def test_check_command_runs_locally_and_parses() -> None:
    # The script is plain sh: run it here (sudo may be absent: then sudo=false).
    out = subprocess.run(["/bin/sh", "-c", check_command(False)], capture_output=True,
                         text=True, check=False, stdin=subprocess.DEVNULL)
    facts = parse_check_output(out.stdout)
    assert facts.user
    assert facts.python3.startswith("Python 3")


def test_parse_check_output_captured() -> None:
    captured = ("user=ubuntu\npython3=Python 3.12.3\nos=Ubuntu 24.04.1 LTS\nsudo=1\n"
                "sudo_err=sudo: a password is required \n")
    facts = parse_check_output(captured)
    assert facts.user == "ubuntu" and facts.sudo is False
    assert "password is required" in facts.sudo_detail
    assert facts.os_release == "Ubuntu 24.04.1 LTS"
    with pytest.raises(ValueError, match="lacks"):
        parse_check_output("user=x\n")


@pytest.mark.parametrize("fails", [False, True])
def test_sudo_message_is_folded_and_only_sent_on_failure(tmp_path: Path, fails: bool) -> None:
    # A stand-in sudo first in PATH: the script's own branches, run by a real sh.
    fake = tmp_path / "sudo"
    fake.write_text("#!/bin/sh\n" + ("printf 'sudo: first line\\nsecond line\\n' >&2; exit 1\n"
                                     if fails else "exit 0\n"))
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run(["/bin/sh", "-c", check_command(False)], capture_output=True,
                         text=True, check=False, stdin=subprocess.DEVNULL, env=env)
    facts = parse_check_output(out.stdout)
    assert facts.sudo is not fails
    if fails:
        assert facts.sudo_detail == "sudo: first line second line"
    else:
        assert "sudo_err=" not in out.stdout and facts.sudo_detail == ""
