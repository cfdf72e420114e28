"""The local shell the unit tests run remote commands in: it behaves as the SSH one does."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_an_exclusive_put_never_writes_through_an_existing_path(tmp_path: Path) -> None:
    from kubebastion.ssh.shell import LocalShell

    shell = LocalShell("local", 10)
    target = tmp_path / "upload"
    shell.put(b"first", str(target), exclusive=True)
    assert target.read_bytes() == b"first" and target.stat().st_mode & 0o777 == 0o600
    victim = tmp_path / "victim"
    victim.write_bytes(b"theirs")
    planted = tmp_path / "planted"
    planted.symlink_to(victim)
    for existing in (target, planted):
        with pytest.raises(FileExistsError):
            shell.put(b"second", str(existing), exclusive=True)
    assert target.read_bytes() == b"first" and victim.read_bytes() == b"theirs"
