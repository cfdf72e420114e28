"""The venv's state and build commands (the build run for real in a local shell), with uv
or pip: stand-in uv executables show the script picking uv when it runs, else pip, and
saying why."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

import pytest

from kubebastion.errors import StepError
from kubebastion.kubespray.venv import (
    Installer,
    UvPlan,
    VenvState,
    build_command,
    build_dir,
    check_replaceable,
    cleanup_command,
    explain_build_failure,
    parse_installer,
    parse_state,
    state_command,
    uv_from_pypi,
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


#: Answers --version; for ``venv`` makes a real venv with this machine's python, for
#: ``pip install`` logs its arguments: enough to see the script drive uv.
FAKE_UV = """#!/bin/sh
case "$1" in
  --version) echo "uv 0.13.8"; exit 0 ;;
  venv) for last; do :; done; python3 -m venv --without-pip "$last"; \
        echo "uv = 0.13.8" >> "$last/pyvenv.cfg" ;;
  pip) echo "$@" > "$(dirname "$0")/pip-args" ;;
esac
"""


def checkout(tmp_path: Path) -> tuple[Path, str]:
    ks = tmp_path / "kubespray"
    ks.mkdir()
    (ks / "requirements.txt").write_text("# nothing pinned in this test\n")
    return ks, hashlib.sha256((ks / "requirements.txt").read_bytes()).hexdigest()


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_uv_builds_the_venv_when_it_runs(tmp_path: Path) -> None:
    ks, digest = checkout(tmp_path)
    uv = executable(tmp_path / "wheels" / "uv", FAKE_UV)
    plan = UvPlan(binary=str(uv), origin="uv 0.13.8, sent with the wheelhouse")
    venv = tmp_path / "venv"
    result = SHELL.run(build_command(str(venv), str(ks), digest, str(tmp_path / "wheels"),
                                     "one", "python3", plan))
    assert result.ok, result.stderr
    assert parse_installer(result.stdout, plan, "") == Installer(
        "uv", "uv 0.13.8, sent with the wheelhouse")
    assert "uv = 0.13.8" in (venv / "pyvenv.cfg").read_text()
    args = (tmp_path / "wheels" / "pip-args").read_text().split()
    assert args[:2] == ["pip", "install"] and "--no-index" in args
    assert args[args.index("--python") + 1] == f"{tmp_path}/venv.kubebastion-one/bin/python"
    assert args[-2:] == ["-r", f"{ks}/requirements.txt"]


@pytest.mark.parametrize(("uv_text", "mode", "why"), [
    (None, 0, "is missing or not executable"),
    (FAKE_UV, 0o644, "is missing or not executable"),
    ("#!/bin/sh\necho 'cannot execute: required file not found' >&2\nexit 126\n", 0o755,
     "cannot execute: required file not found"),
], ids=["absent", "not-executable", "does-not-run"])
def test_pip_builds_it_when_uv_does_not_run_and_says_why(
        tmp_path: Path, uv_text: str | None, mode: int, why: str) -> None:
    ks, digest = checkout(tmp_path)
    uv = tmp_path / "wheels" / "uv"
    (tmp_path / "wheels").mkdir()
    if uv_text is not None:
        uv.write_text(uv_text)
        uv.chmod(mode)
    plan = UvPlan(binary=str(uv), origin="uv 0.13.8, sent with the wheelhouse")
    venv = tmp_path / "venv"
    result = SHELL.run(build_command(str(venv), str(ks), digest, str(tmp_path / "wheels"),
                                     "one", "python3", plan))
    assert result.ok, result.stderr
    installer = parse_installer(result.stdout, plan, "")
    assert installer.name == "pip" and installer.reason.startswith(
        "uv did not run on the bastion (") and why in installer.reason, installer
    assert (venv / "bin" / "pip").exists() and "uv =" not in (venv / "pyvenv.cfg").read_text()


def test_without_a_uv_plan_pip_builds_it_for_the_reason_given(tmp_path: Path) -> None:
    ks, digest = checkout(tmp_path)
    (tmp_path / "wheels").mkdir()
    result = SHELL.run(build_command(str(tmp_path / "venv"), str(ks), digest,
                                     str(tmp_path / "wheels"), "one"))
    assert result.ok, result.stderr
    assert parse_installer(result.stdout, None, "kubespray uv: false in the inventory") == (
        Installer("pip", "kubespray uv: false in the inventory"))


def test_an_online_bastion_installs_uv_from_pypi_once(tmp_path: Path) -> None:
    """The install command runs when uv is not there yet; an install that fails (no PyPI)
    falls back to pip with pip's own last words."""
    ks, digest = checkout(tmp_path)
    plan = uv_from_pypi(str(tmp_path / "uv-tool"), "0.13.8", "python3")
    assert plan.binary == f"{tmp_path}/uv-tool/bin/uv"
    assert "--retries 0" in plan.install and "uv==0.13.8" in plan.install
    offline = UvPlan(plan.binary, plan.origin,
                     install="echo 'ERROR: No matching distribution found for uv==0.13.8' "
                             ">&2; exit 1")
    result = SHELL.run(build_command(str(tmp_path / "venv"), str(ks), digest,
                                     str(tmp_path), "one", "python3", offline))
    assert result.ok, result.stderr
    installer = parse_installer(result.stdout, offline, "")
    assert installer == Installer("pip", "uv did not run on the bastion (ERROR: No matching "
                                         "distribution found for uv==0.13.8)")
    installs = UvPlan(plan.binary, plan.origin,
                      install=f"mkdir -p {tmp_path}/uv-tool/bin && cp "
                              f"{executable(tmp_path / 'fake-uv', FAKE_UV)} {plan.binary}")
    result = SHELL.run(build_command(str(tmp_path / "venv"), str(ks), digest,
                                     str(tmp_path), "two", "python3", installs))
    assert result.ok, result.stderr
    assert parse_installer(result.stdout, installs, "").name == "uv"
