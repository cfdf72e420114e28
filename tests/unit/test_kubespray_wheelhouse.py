"""The wheelhouse: wheel platform tags for the bastion, pip's download command, a prebuilt
one used as is; uv for the bastion out of its wheel, and the wheelhouse as one tar stream
unpacked as it arrives (for real, with a local shell)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from kubebastion.errors import StepError
from kubebastion.kubespray.bastion import BastionFacts
from kubebastion.kubespray.wheelhouse import (
    COMPLETE_MARKER,
    cache_key,
    is_prebuilt,
    pip_download_command,
    platform_tags,
    remote_present_command,
    remote_unpack_command,
    uv_folder,
    uv_for,
    wheel_files,
    wheelhouse_for,
    wheelhouse_id,
    wheelhouse_stream,
)
from kubebastion.ssh.shell import LocalShell

FACTS = BastionFacts("/home/u", "u", "3.11.2", "x86_64", "glibc 2.36", True)
SHELL = LocalShell("bastion", 60)


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


def uv_wheel(folder: Path, binary: bytes = b"\x7fELF uv") -> Path:
    """A wheel shaped like PyPI's uv: the binary under ``uv-<v>.data/scripts/``."""
    path = folder / "uv-0.13.8-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("uv/__init__.py", "")
        wheel.writestr("uv-0.13.8.data/scripts/uv", binary)
        wheel.writestr("uv-0.13.8.data/scripts/uvx", b"uvx")
    return path


def test_a_prebuilt_wheelhouse_gives_its_uv_wheel_s_binary(tmp_path: Path) -> None:
    (tmp_path / "ansible-11.13.0-py3-none-any.whl").write_bytes(b"wheel")
    assert uv_for(tmp_path, FACTS).path is None
    assert uv_for(tmp_path, FACTS).note == f"no uv wheel (uv-*.whl) in the wheelhouse {tmp_path}"
    uv_wheel(tmp_path)
    found = uv_for(tmp_path, FACTS)
    assert found.path is not None and found.path.read_bytes() == b"\x7fELF uv"
    assert found.path.stat().st_mode & 0o111 and found.note == (
        "uv 0.13.8, sent with the wheelhouse")
    # the uv wheel itself is not sent: its binary is
    assert [w.name for w in wheel_files(tmp_path)] == ["ansible-11.13.0-py3-none-any.whl"]


def test_a_cached_uv_is_not_downloaded_again(tmp_path: Path) -> None:
    folder = uv_folder(tmp_path, FACTS)
    folder.mkdir()
    (folder / "uv").write_bytes(b"cached")
    (folder / COMPLETE_MARKER).write_text("uv==0.13.8\n")
    assert uv_for(tmp_path, FACTS).path == folder / "uv"  # no pip download attempted
    other = BastionFacts(**{**FACTS.__dict__, "machine": "aarch64"})
    assert uv_folder(tmp_path, other) != folder


def test_the_wheelhouse_goes_in_one_stream_and_only_once(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "a-1.0-py3-none-any.whl").write_bytes(b"a" * 70000)
    (local / "b-2.0-py3-none-any.whl").write_bytes(b"b" * 10)
    uv = local / "uv-binary"
    uv.write_bytes(b"\x7fELF" * 1000)
    digest = wheelhouse_id(local, uv)
    assert digest != wheelhouse_id(local)  # uv counts
    remote = tmp_path / "bastion" / "cache" / digest
    assert SHELL.run(remote_present_command(str(remote), digest)).stdout.strip() == "absent"
    chunks = list(wheelhouse_stream(local, uv))
    assert len(chunks) > 1  # made while sent, not one buffer
    result = SHELL.run(remote_unpack_command(str(remote), digest), stdin=iter(chunks))
    assert result.ok, result.stderr
    assert sorted(p.name for p in remote.iterdir()) == [
        COMPLETE_MARKER, "a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl", "uv"]
    assert (remote / "uv").stat().st_mode & 0o777 == 0o755
    assert (remote / "a-1.0-py3-none-any.whl").read_bytes() == b"a" * 70000
    assert SHELL.run(remote_present_command(str(remote), digest)).stdout.strip() == "present"
    # a folder of the same name holding something else is not taken for it
    assert SHELL.run(remote_present_command(str(remote), "0" * 20)).stdout.strip() == "absent"


def test_a_cut_stream_leaves_nothing_taken_for_complete(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "a-1.0-py3-none-any.whl").write_bytes(b"a" * 70000)
    digest = wheelhouse_id(local)
    remote = tmp_path / "cache" / digest
    cut = b"".join(wheelhouse_stream(local))[:30000]
    assert not SHELL.run(remote_unpack_command(str(remote), digest), stdin=cut).ok
    assert not remote.exists()
    assert SHELL.run(remote_present_command(str(remote), digest)).stdout.strip() == "absent"
