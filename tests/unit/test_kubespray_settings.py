"""Settings from the inventory and the command line, bastion facts, wheel platform tags,
and the venv's state and build commands (the build run for real in a local shell)."""

from __future__ import annotations

import hashlib
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from kubebastion.errors import ConfigError, StepError
from kubebastion.kubespray.bastion import FACTS_COMMAND, BastionFacts, parse_facts
from kubebastion.kubespray.settings import (
    DEFAULT_REPOSITORY,
    DEFAULT_TIMEOUT,
    DEFAULT_WHEELHOUSE,
    DirectorySource,
    GitSource,
    TarballSource,
    expand_home,
    is_git_url,
    settings_from,
)
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
from kubebastion.kubespray.wheelhouse import (
    cache_key,
    is_prebuilt,
    pip_download_command,
    platform_tags,
    wheelhouse_for,
    wheelhouse_id,
)
from kubebastion.ssh.shell import LocalShell

SHELL = LocalShell("bastion", 120)
FACTS = BastionFacts("/home/u", "u", "3.11.2", "x86_64", "glibc 2.36", True)


def checkout(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cluster.yml").write_text("---\n")
    (root / "requirements.txt").write_text("ansible==11.13.0\n")
    return root


def test_defaults_clone_the_official_release(tmp_path: Path) -> None:
    settings = settings_from(None, tmp_path)
    assert settings.source == GitSource(DEFAULT_REPOSITORY, "v2.31.0")
    assert (settings.checkout_dir, settings.venv_dir) == ("~/kubespray", "~/kubespray-venv")
    assert settings.wheelhouse is None and settings.timeout == DEFAULT_TIMEOUT
    assert settings.log_dir == tmp_path / "logs"


def test_inventory_paths_are_relative_to_the_config(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    checkout(tmp_path / "conf" / "ks")
    monkeypatch.chdir(tmp_path)
    data: dict[str, Any] = {"source": "ks", "wheelhouse": "wh", "timeout": 60,
                            "venv_dir": "/opt/venv/", "version": "v2.30.0"}
    settings = settings_from(data, tmp_path / "conf")
    assert settings.source == DirectorySource(tmp_path / "conf" / "ks")
    assert settings.wheelhouse == tmp_path / "conf" / "wh"
    assert settings.venv_dir == "/opt/venv" and settings.timeout == 60.0
    assert settings.version == "v2.30.0"
    # command-line values win, relative to the current folder
    checkout(tmp_path / "other")
    cli = settings_from(data, tmp_path / "conf", source="other", wheelhouse="w2", timeout=5,
                        version="v2.31.0", force=True)
    assert cli.source == DirectorySource(tmp_path / "other")
    assert cli.wheelhouse == tmp_path / "w2" and cli.timeout == 5 and cli.force
    assert settings_from({"wheelhouse": True}, tmp_path).wheelhouse == (
        DEFAULT_WHEELHOUSE.expanduser())


def test_python_setting(tmp_path: Path) -> None:
    assert settings_from(None, tmp_path).python == "python3"
    assert settings_from({"python": "python3.11"}, tmp_path).python == "python3.11"
    assert settings_from({"python": "/opt/py/bin/python3"}, tmp_path).python == (
        "/opt/py/bin/python3")


def test_sources(tmp_path: Path) -> None:
    tarball = tmp_path / "kubespray-2.31.0.tar.gz"
    tarball.write_bytes(b"")
    assert settings_from({"source": str(tarball)}, tmp_path).source == TarballSource(tarball)
    assert settings_from({"source": "git@github.com:me/kubespray.git"}, tmp_path).source == (
        GitSource("git@github.com:me/kubespray.git", "v2.31.0"))
    assert is_git_url("https://github.com/kubernetes-sigs/kubespray.git")
    assert not is_git_url("lab/kubespray")


@pytest.mark.parametrize(("data", "message"), [
    ({"sorce": "x"}, "unknown kubespray setting(s): sorce"),
    ({"source": "missing/dir"}, "neither a git URL nor an existing path"),
    ({"source": "notkubespray"}, "is not a kubespray checkout (missing cluster.yml"),
    ({"version": "v1;rm"}, "is not a git tag or branch"),
    ({"timeout": 0}, "timeout must be a positive number"),
    ({"timeout": True}, "timeout must be a positive number"),
    ({"venv_dir": "relative"}, "must be an absolute path or start with ~/"),
    ({"checkout_dir": "~"}, "must be an absolute path or start with ~/"),
    ({"wheelhouse": 3}, "wheelhouse must be a folder or true"),
    ({"source": 3}, "source must be a string"),
    ({"python": "python3; rm -rf ~"}, "python 'python3; rm -rf ~' must be a command name"),
    ({"python": "bin/python3"}, "must be a command name (python3.11) or an absolute path"),
], ids=["typo", "missing", "not-kubespray", "version", "zero", "bool", "relative", "home",
        "wheelhouse", "type", "python-shell", "python-relative"])
def test_bad_settings(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    (tmp_path / "notkubespray").mkdir()
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_from(data, tmp_path)


def test_expand_home() -> None:
    assert expand_home("~/kubespray", "/home/u") == "/home/u/kubespray"
    assert expand_home("/opt/k", "/home/u") == "/opt/k"
    assert expand_home("~", "/home/u") == "/home/u"


def test_facts_from_this_machine() -> None:
    facts = parse_facts(SHELL.run(FACTS_COMMAND).stdout)
    assert facts.home.startswith("/") and facts.python.startswith("3.")
    assert facts.python_minor.count(".") == 1 and facts.machine and facts.git


def test_facts_errors() -> None:
    assert parse_facts("home=/home/u\npython=\n").python == ""  # kubespray.python says so
    with pytest.raises(StepError, match="home folder"):
        parse_facts("python=3.11.2\n")


def test_platform_tags_cover_older_manylinux() -> None:
    tags = platform_tags("x86_64", "glibc 2.36")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags
    assert "manylinux_2_5_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert platform_tags("aarch64", "")[0] == "musllinux_1_2_aarch64"
    with pytest.raises(StepError):
        platform_tags("", "glibc 2.36")


def test_pip_download_targets_the_bastion(tmp_path: Path) -> None:
    command = pip_download_command(tmp_path / "r.txt", tmp_path / "w", FACTS)
    assert command[:3] == [sys.executable, "-m", "pip"]
    assert "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.11"
    assert command.count("--platform") == len(platform_tags("x86_64", "glibc 2.36"))
    other = BastionFacts("/h", "u", "3.12.1", "x86_64", "glibc 2.36", True)
    assert cache_key(b"a", FACTS) != cache_key(b"a", other)
    assert cache_key(b"a", FACTS) != cache_key(b"b", FACTS)
    assert cache_key(b"a", FACTS) == cache_key(b"a", FACTS)


def test_prebuilt_wheelhouse_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "x-1.0-py3-none-any.whl").write_bytes(b"zip")
    assert is_prebuilt(tmp_path)
    assert wheelhouse_for(tmp_path, b"x==1.0\n", FACTS) == tmp_path
    first = wheelhouse_id(tmp_path)
    (tmp_path / "y-1.0-py3-none-any.whl").write_bytes(b"zip")
    assert wheelhouse_id(tmp_path) != first


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
