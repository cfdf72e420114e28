"""Command builders and parsers of kubebastion.ssh.remote."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from kubebastion.ssh.remote import (
    CONFLICT_EXIT,
    MISSING,
    FileWrite,
    backups_made,
    classify_sudo_failure,
    install_files_command,
    parse_file_state,
    parse_key_values,
    sudo_command,
    write_file,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sudo_command_without_password_never_prompts() -> None:
    assert sudo_command("id -u", with_password=False).startswith("sudo -n -- /bin/sh -c ")


def test_sudo_command_with_password_reads_stdin_silently() -> None:
    command = sudo_command("id -u", with_password=True)
    assert command.startswith("sudo -S -k -p '' -- /bin/sh -c ")


def test_sudo_command_detaches_stdin_from_the_wrapped_command() -> None:
    # Run the inner shell locally (no sudo): whatever is on stdin must not reach `cat`.
    inner = shlex.split(sudo_command("cat", with_password=False))[-1]
    out = subprocess.run(["/bin/sh", "-c", inner], input="secret\n", capture_output=True,
                         text=True, check=True)
    assert out.stdout == ""


@pytest.mark.parametrize(
    "hostile",
    ["a'b", "$(touch canary)", "x; touch canary", "line\nbreak", "`touch canary`",
     "sp ace"],
    ids=["quote", "subst", "semicolon", "newline", "backtick", "space"],
)
def test_install_files_command_keeps_hostile_paths_inert(hostile: str, tmp_path: Path
                                                         ) -> None:
    bundle = tmp_path / f"src {hostile}"
    bundle.write_text("payload")
    target = tmp_path / "dir" / hostile
    command = install_files_command(str(bundle), [FileWrite(str(target), b"payload", 0o640)],
                                    "bak")
    subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, check=True)
    assert target.read_text() == "payload"
    assert target.stat().st_mode & 0o777 == 0o640
    assert not bundle.exists()
    assert not (tmp_path / "canary").exists() and not (tmp_path / "dir" / "canary").exists()


def test_write_file_compares_then_writes_through_write_files(tmp_path: Path) -> None:
    """Run with a local shell: nothing written when all matches, a backup only of a
    previous, different file, no staged or uploaded leftovers."""
    from kubebastion.ssh.shell import LocalShell

    shell = LocalShell("local", 10)
    target = tmp_path / "conf"
    assert write_file(shell, str(target), b"one\n", mode=0o640, backup=True)
    assert os.listdir(tmp_path) == ["conf"]  # no previous file: no backup
    assert target.stat().st_mode & 0o777 == 0o640
    assert not write_file(shell, str(target), b"one\n", mode=0o640, backup=True)
    assert write_file(shell, str(target), b"one\n", mode=0o600, backup=True)
    assert os.listdir(tmp_path) == ["conf"]  # same bytes, new mode: nothing to keep
    assert write_file(shell, str(target), b"two\n", mode=0o600, dry_run=True)
    assert target.read_bytes() == b"one\n"
    assert write_file(shell, str(target), b"two\n", mode=0o600, backup=True)
    backup, = (p for p in tmp_path.iterdir() if p.name != "conf")
    assert backup.name.startswith("conf.kubebastion-backup-")
    assert backup.read_bytes() == b"one\n" and target.read_bytes() == b"two\n"
    assert write_file(shell, str(target), b"three\n", mode=0o600)  # backup off
    assert len(os.listdir(tmp_path)) == 2


def test_install_files_command_installs_each_file_from_one_bundle(tmp_path: Path) -> None:
    """Run locally: every file cut out of the bundle whole, mode set, a foreign file
    backed up, the bundle removed, no staged leftovers; odd names stay inert."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "theirs.conf").write_text("their line\n")
    files = [FileWrite(str(tmp_path / "etc" / "theirs.conf"), b"ours\n", 0o644, backup=True),
             FileWrite(str(tmp_path / "new dir" / "$(touch canary)"), b"", 0o600),
             FileWrite(str(tmp_path / "new dir" / "run.sh"), b"#!/bin/sh\n\x00\xff" * 500,
                       0o755)]
    bundle = tmp_path / "bundle"
    bundle.write_bytes(b"".join(f.data for f in files))
    subprocess.run(["/bin/sh", "-c", install_files_command(str(bundle), files, "bak")],
                   cwd=tmp_path, check=True)
    for entry in files:
        installed = Path(entry.path)
        assert installed.read_bytes() == entry.data
        assert installed.stat().st_mode & 0o777 == entry.mode
    assert (tmp_path / "etc" / "theirs.conf.bak").read_text() == "their line\n"
    assert not bundle.exists() and not (tmp_path / "canary").exists()
    assert sorted(p.name for p in (tmp_path / "new dir").iterdir()) == [
        "$(touch canary)", "run.sh"]


def test_install_files_command_refuses_a_damaged_bundle_and_leaves_the_target(
        tmp_path: Path) -> None:
    target = tmp_path / "keep.conf"
    target.write_text("old\n")
    files = [FileWrite(str(target), b"new contents\n")]
    bundle = tmp_path / "bundle"
    bundle.write_bytes(b"new cont")  # cut short
    done = subprocess.run(["/bin/sh", "-c", install_files_command(str(bundle), files, "b")],
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "arrived damaged" in done.stderr
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "keep.conf"]


def test_install_files_command_compares_and_swaps_under_its_lock(tmp_path: Path) -> None:
    """A batch whose files are not what was read writes nothing at all (exit 75)."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("a0")
    files = [FileWrite(str(first), b"a1", 0o600, backup=True, expected_sha256=sha(b"a0")),
             FileWrite(str(second), b"b1", 0o600, expected_sha256=sha(b"someone's"))]
    bundle = tmp_path / "bundle"
    bundle.write_bytes(b"a1b1")
    lock = str(tmp_path / ".lock")
    script = install_files_command(str(bundle), files, "bak", lock=lock)
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                          check=False)
    assert done.returncode == CONFLICT_EXIT
    assert first.read_text() == "a0" and not second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "a", "bundle"]
    files[1] = dataclasses.replace(files[1], expected_sha256=MISSING)
    done = subprocess.run(["/bin/sh", "-c", install_files_command(str(bundle), files, "bak",
                                                                  lock=lock)],
                          capture_output=True, text=True, check=True)
    assert (first.read_text(), second.read_text()) == ("a1", "b1")
    assert backups_made(done.stdout, files, "bak") == [f"{first}.bak"]
    assert Path(f"{first}.bak").read_text() == "a0"


def test_install_files_command_sets_the_folder_mode_and_sweeps_stale_stages(
        tmp_path: Path) -> None:
    folder = tmp_path / "kube"
    folder.mkdir(mode=0o755)
    stale, fresh = folder / ".config.kubebastion-dead0001", folder / ".config.kubebastion-live"
    theirs = folder / ".config.other-tool"
    for leftover in (stale, fresh, theirs):
        leftover.write_text("x")
    hour_ago = time.time() - 3600
    for old in (stale, theirs):
        os.utime(old, (hour_ago, hour_ago))
    bundle = tmp_path / "bundle"
    bundle.write_bytes(b"cfg")
    files = [FileWrite(str(folder / "config"), b"cfg", 0o600, folder_mode=0o700)]
    subprocess.run(["/bin/sh", "-c", install_files_command(str(bundle), files, "bak")],
                   check=True)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in folder.iterdir()) == [
        ".config.kubebastion-live", ".config.other-tool", "config"]


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [("sudo: a password is required\n", "needs a password"),
     ("sudo: no password was provided\n", "needs a password"),
     ("Sorry, try again.\nsudo: no password was provided\n", "rejected the password"),
     ("sudo: 1 incorrect password attempt\n", "rejected the password"),
     ("kb is not in the sudoers file.\n", "may not use sudo"),
     ("cp: cannot stat\n", None)],
    ids=["needs-password", "no-password-on-stdin", "wrong-then-eof", "wrong-password",
         "not-sudoer",
         "ordinary-failure"],
)
def test_classify_sudo_failure(stderr: str, expected: str | None) -> None:
    reason = classify_sudo_failure(stderr)
    assert (reason is None) if expected is None else (expected in (reason or ""))


def test_parse_file_state() -> None:
    state = parse_file_state("ab12\n600 root root\n")
    assert (state.exists, state.sha256, state.mode, state.owner) == (True, "ab12", 0o600, "root")
    assert parse_file_state("missing\n").exists is False
    with pytest.raises(ValueError):
        parse_file_state("garbage line here\n")


def test_command_output_is_returned_whole_even_when_it_contains_the_password() -> None:
    """Data is not scrubbed (a password "ubuntu" would turn /home/ubuntu into /home/***
    and base64 blobs into garbage); errors are, since they are shown."""
    from kubebastion import secrets
    from kubebastion.errors import RemoteCommandError
    from kubebastion.ssh.remote import run
    from kubebastion.ssh.shell import LocalShell

    sentinel = "kb-unit-sentinel-5d1e"
    secrets.set_sudo_password(sentinel)
    try:
        shell = LocalShell("local", 10)
        assert run(shell, f"echo /home/{sentinel}").stdout == f"/home/{sentinel}\n"
        with pytest.raises(RemoteCommandError) as raised:
            run(shell, f"echo {sentinel} >&2; exit 3")
        assert sentinel not in str(raised.value) and "***" in str(raised.value)
        assert sentinel not in raised.value.stderr
    finally:
        secrets.set_sudo_password(None)


@pytest.mark.parametrize(("stdout", "expected"), [
    ("home=/home/u\nuser=u\n", {"home": "/home/u", "user": "u"}),
    (" python = 3.11.2 \nlibc=glibc 2.36\n", {"python": "3.11.2", "libc": "glibc 2.36"}),
    ("sudo_err=a=b\n", {"sudo_err": "a=b"}),
    ("Welcome to the bastion\nvenv=yes\n\n", {"venv": "yes"}),
    ("running=no\nrunning=yes\n", {"running": "yes"}),
    ("python=\n", {"python": ""}),
], ids=["plain", "stripped", "equals-in-value", "foreign-lines", "last-wins", "empty-value"])
def test_parse_key_values(stdout: str, expected: dict[str, str]) -> None:
    assert parse_key_values(stdout) == expected
