"""The bastion key and authorized_keys commands, run for real in a local shell with HOME in
a temp folder, and the bastion's known_hosts built from the operator's verified keys."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from kubebastion.cluster import CONTROL_PLANE, WORKERS, Node
from kubebastion.errors import StepError
from kubebastion.kubespray.sshtrust import (
    authorize_command,
    bastion_key_command,
    key_identity,
    known_hosts_entry_name,
    known_hosts_text,
    parse_bastion_key,
)
from kubebastion.ssh.shell import LocalShell

SHELL = LocalShell("bastion", 60)


def in_home(home: Path, command: str) -> str:
    return f"HOME={home}; export HOME\n{command}"


def test_key_is_created_once_and_never_replaced(tmp_path: Path) -> None:
    key = tmp_path / ".ssh" / "id_ed25519"
    dry = parse_bastion_key(SHELL.run(in_home(tmp_path, bastion_key_command(
        str(key), "kubebastion@bastion", create=False))).stdout)
    assert dry.state == "missing" and dry.public_key is None and not key.exists()

    first = parse_bastion_key(SHELL.run(in_home(tmp_path, bastion_key_command(
        str(key), "kubebastion@bastion", create=True))).stdout)
    assert first.created and first.public_key is not None
    assert first.public_key.startswith("ssh-ed25519 ")
    assert first.public_key.endswith(" kubebastion@bastion")
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".ssh").stat().st_mode & 0o777 == 0o700

    again = parse_bastion_key(SHELL.run(in_home(tmp_path, bastion_key_command(
        str(key), "kubebastion@bastion", create=True))).stdout)
    assert again.state == "exists" and again.public_key == first.public_key

    (tmp_path / ".ssh" / "id_ed25519.pub").unlink()  # a lost .pub is rebuilt from the key
    rebuilt = parse_bastion_key(SHELL.run(in_home(tmp_path, bastion_key_command(
        str(key), "c", create=True))).stdout)
    assert rebuilt.public_key is not None
    assert key_identity(rebuilt.public_key) == key_identity(first.public_key)


def test_a_key_with_a_passphrase_is_reported(tmp_path: Path) -> None:
    key = tmp_path / ".ssh" / "id_ed25519"
    key.parent.mkdir()
    assert SHELL.run(f"ssh-keygen -q -t ed25519 -N secret-pass -f {key}").ok
    state = parse_bastion_key(SHELL.run(in_home(tmp_path, bastion_key_command(
        str(key), "c", create=True))).stdout)
    assert state.state == "encrypted"


def test_authorize_appends_once_matching_by_key_not_comment(tmp_path: Path) -> None:
    public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests kubebastion@bastion"
    auth = tmp_path / ".ssh" / "authorized_keys"
    auth.parent.mkdir(mode=0o700)
    auth.write_text("ssh-rsa AAAAB3other operator@laptop")  # no trailing newline
    assert SHELL.run(in_home(tmp_path, authorize_command(public, dry_run=True))
                     ).stdout.strip() == "absent"
    assert auth.read_text() == "ssh-rsa AAAAB3other operator@laptop"
    assert SHELL.run(in_home(tmp_path, authorize_command(public, dry_run=False))
                     ).stdout.strip() == "added"
    assert auth.read_text() == f"ssh-rsa AAAAB3other operator@laptop\n{public}\n"
    renamed = public.replace("kubebastion@bastion", "renamed")
    assert SHELL.run(in_home(tmp_path, authorize_command(renamed, dry_run=False))
                     ).stdout.strip() == "present"
    assert auth.read_text().count("AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests") == 1


def test_authorize_creates_the_file_private(tmp_path: Path) -> None:
    public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests c"
    assert SHELL.run(in_home(tmp_path, authorize_command(public, dry_run=False))
                     ).stdout.strip() == "added"
    auth = tmp_path / ".ssh" / "authorized_keys"
    assert auth.stat().st_mode & 0o777 == 0o600
    with pytest.raises(StepError):
        key_identity("not a key")


def node(name: str, address: str, port: int = 22) -> Node:
    return Node(name, address, address, address, "u", port,
                frozenset({CONTROL_PLANE if name.endswith("m0") else WORKERS}))


def test_known_hosts_from_the_operators_verified_keys(tmp_path: Path) -> None:
    m0_key, w0_key = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    hashed = paramiko.HostKeys.hash_host("198.18.1.100")
    operator = tmp_path / "known_hosts"
    operator.write_text(
        f"198.18.1.10 {m0_key.get_name()} {m0_key.get_base64()}\n"
        f"{hashed} {w0_key.get_name()} {w0_key.get_base64()}\n")
    keys = paramiko.HostKeys(str(operator))
    nodes = [node("k8s-m0", "198.18.1.10"), node("k8s-w0", "198.18.1.100")]
    text = known_hosts_text(nodes, lambda _: keys)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [f"198.18.1.10 {m0_key.get_name()} {m0_key.get_base64()}",
                     f"198.18.1.100 {w0_key.get_name()} {w0_key.get_base64()}"]
    # OpenSSH reads it back
    written = tmp_path / "bastion_known_hosts"
    written.write_text(text)
    found = SHELL.run(f"ssh-keygen -F 198.18.1.100 -f {written}")
    assert found.ok and w0_key.get_base64() in found.stdout


def test_a_node_without_a_verified_key_is_named(tmp_path: Path) -> None:
    keys = paramiko.HostKeys()
    with pytest.raises(StepError, match=r"k8s-w9 \(\[198.18.1.109\]:2222\)"):
        known_hosts_text([node("k8s-w9", "198.18.1.109", 2222)], lambda _: keys)
    assert known_hosts_entry_name(node("a", "198.18.1.1")) == "198.18.1.1"
