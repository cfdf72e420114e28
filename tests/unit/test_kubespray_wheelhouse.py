"""The wheelhouse: wheel platform tags for the bastion, pip's download command, a prebuilt
one used as is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubebastion.errors import StepError
from kubebastion.kubespray.bastion import BastionFacts
from kubebastion.kubespray.wheelhouse import (
    cache_key,
    is_prebuilt,
    pip_download_command,
    platform_tags,
    wheelhouse_for,
    wheelhouse_id,
)

FACTS = BastionFacts("/home/u", "u", "3.11.2", "x86_64", "glibc 2.36", True)


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
