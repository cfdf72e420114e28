"""The venv's state and build commands (the build run for real in a local shell)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from kubebastion.errors import StepError
from kubebastion.kubespray.venv import (
    VenvState,
    build_command,
    build_dir,
    check_replaceable,
    cleanup_command,
    explain_build_failure,
    parse_state,
    state_command,
)
from kubebastion.ssh.shell import LocalShell

SHELL = LocalShell("bastion", 120)


def test_venv_state_parsing_and_guard() -> None:
    state = parse_state("requirements=abc\nbuilt=abc\nansible=yes\nvenv=yes\nexists=yes\n")
    assert state.up_to_date
    assert not parse_state("requirements=abc\nbuilt=old\nansible=yes\n").up_to_date
    assert not parse_state("built=\n").up_to_date
    with pytest.raises(StepError, match="not a venv"):
        check_replaceable(VenvState("a", "", False, False, True), "/home/u/data")
    check_replaceable(VenvState("a", "", False, False, False), "/home/u/new")
    assert "python3-venv" in explain_build_failure("ensurepip is not available")
    assert "--wheelhouse" in explain_build_failure(
        "ERROR: No matching distribution found for ansible==11.13.0")


def test_venv_build_beside_then_swap_for_real(tmp_path: Path) -> None:
    """Real ``python3 -m venv`` + ``pip install --no-index`` (nothing to install) here: the
    build goes beside, the link is swapped, a rebuild replaces it and removes the old one,
    and a half-built folder of ours is listed as a leftover (nothing else is)."""
    ks = tmp_path / "kubespray"
    ks.mkdir()
    (ks / "requirements.txt").write_text("# nothing pinned in this test\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    venv = tmp_path / "venv"
    digest = hashlib.sha256((ks / "requirements.txt").read_bytes()).hexdigest()

    def state() -> VenvState:
        return parse_state(SHELL.run(state_command(str(venv), str(ks))).stdout, str(venv))

    before = state()
    assert before.requirements_sha256 == digest and not before.exists
    result = SHELL.run(build_command(str(venv), str(ks), digest, str(wheels), "one"),
                       timeout=120)
    assert result.ok, result.stderr
    after = state()
    assert after.built_from == digest and after.is_venv and after.is_link
    assert not after.has_ansible and after.leftovers == ()
    assert venv.readlink() == Path(build_dir(str(venv), "one"))

    half = Path(build_dir(str(venv), "interrupted"))
    (half / "bin").mkdir(parents=True)  # what an interrupted build leaves
    (tmp_path / "venv.someone-elses").mkdir()
    assert state().leftovers == (str(half),)
    assert SHELL.run(cleanup_command(state().leftovers)).ok
    assert not half.exists() and (tmp_path / "venv.someone-elses").is_dir()

    result = SHELL.run(build_command(str(venv), str(ks), digest, str(wheels), "two"),
                       timeout=120)
    assert result.ok, result.stderr
    assert venv.readlink() == Path(build_dir(str(venv), "two"))
    assert not Path(build_dir(str(venv), "one")).exists()
    assert state().is_venv and state().leftovers == ()


def test_a_real_venv_folder_is_kept_as_previous_when_the_link_replaces_it(
        tmp_path: Path) -> None:
    ks = tmp_path / "kubespray"
    ks.mkdir()
    (ks / "requirements.txt").write_text("\n")
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    result = SHELL.run(build_command(str(venv), str(ks), "x", str(tmp_path), "new"),
                       timeout=120)
    assert result.ok, result.stderr
    assert venv.is_symlink() and (tmp_path / "venv.previous" / "pyvenv.cfg").is_file()


def test_leftovers_outside_our_naming_are_never_listed() -> None:
    out = ("leftover=/h/venv.kubebastion-abc\nleftover=/h/other.kubebastion-x\n"
           "leftover=/h/venv.kubebastion-a/b\nleftover=/h/venv.previous\n")
    assert parse_state(out, "/h/venv").leftovers == ("/h/venv.kubebastion-abc",)
    assert parse_state(out).leftovers == ()


def _tiny_wheel(folder: Path, name: str) -> None:
    """A valid pure-Python wheel with one module, written by hand (no build tools)."""
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as wheel:
        for path, text in {**files, f"{dist}/RECORD": record}.items():
            wheel.writestr(path, text)


def test_the_venv_build_does_not_byte_compile_what_it_installs(tmp_path: Path) -> None:
    """pip's byte-compiling of ansible 11's ~50,000 files was most of the build's time; the
    requirements are installed with --no-compile (Python compiles what it imports)."""
    ks = tmp_path / "kubespray"
    ks.mkdir()
    (ks / "requirements.txt").write_text("kbtinypkg==1.0\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _tiny_wheel(wheels, "kbtinypkg")
    venv = tmp_path / "venv"
    result = SHELL.run(build_command(str(venv), str(ks), "x", str(wheels), "one"), timeout=120)
    assert result.ok, result.stderr
    installed = list(venv.resolve().glob("lib/python3*/site-packages/kbtinypkg.py"))
    assert len(installed) == 1
    assert not list(installed[0].parent.glob("__pycache__/kbtinypkg*.pyc"))


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
