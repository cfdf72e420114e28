"""The checkout's identity (digests, markers) and its commands, run for real in a local
shell: unpacking an uploaded tree or release tarball, and a shallow git clone of a tag
(from a local repository: the official one needs internet)."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from kubebastion.kubespray.settings import (
    DEFAULT_REPOSITORY,
    DirectorySource,
    GitSource,
    TarballSource,
)
from kubebastion.kubespray.source import (
    MARKER,
    SourceMarker,
    directory_tarball,
    git_clone_command,
    local_requirements,
    marker_command,
    parse_marker_output,
    tarball_member,
    tarball_strip_components,
    tree_digest,
    unpack_command,
    wanted_marker,
)
from kubebastion.ssh.shell import LocalShell

SHELL = LocalShell("bastion", 60)


def make_checkout(root: Path, version: str = "v2.31.0-test") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cluster.yml").write_text("- import_playbook: playbooks/cluster.yml\n")
    (root / "requirements.txt").write_text("ansible-core==2.18.19\n")
    (root / "VERSION").write_text(version + "\n")
    (root / "roles" / "x").mkdir(parents=True)
    (root / "roles" / "x" / "main.yml").write_text("---\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"\0")
    return root


def test_tree_digest_follows_content_and_exec_bit_not_caches(tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "ks")
    first = tree_digest(root)
    (root / "__pycache__" / "y.pyc").write_bytes(b"\1")
    (root / ".git" / "index").write_bytes(b"\1")
    assert tree_digest(root) == first
    (root / "run.sh").chmod(0o644)
    assert tree_digest(root) != first
    (root / "run.sh").chmod(0o755)
    assert tree_digest(root) == first
    (root / "roles" / "x" / "main.yml").write_text("--- # edited\n")
    assert tree_digest(root) != first


def test_markers() -> None:
    git = wanted_marker(GitSource(DEFAULT_REPOSITORY, "v2.31.0"))
    assert git == SourceMarker("git", f"{DEFAULT_REPOSITORY}@v2.31.0", "v2.31.0")
    assert SourceMarker.parse(git.to_json()) == git
    assert SourceMarker.parse("not json") is None
    assert parse_marker_output("absent\n") == (False, None)
    assert parse_marker_output("none\n") == (True, None)
    assert parse_marker_output(git.to_json() + "\n") == (True, git)


def test_upload_of_a_directory_unpacks_and_swaps(tmp_path: Path) -> None:
    local = make_checkout(tmp_path / "local")
    target = tmp_path / "bastion" / "kubespray"
    marker = wanted_marker(DirectorySource(local))
    assert marker.label == "v2.31.0-test" and marker.identity.startswith("sha256:")

    assert parse_marker_output(SHELL.run(marker_command(str(target))).stdout) == (False, None)
    archive = tmp_path / "upload.tgz"
    archive.write_bytes(directory_tarball(local))
    assert SHELL.run(unpack_command(str(archive), str(target), 0, marker)).ok
    assert (target / "cluster.yml").is_file()
    assert (target / "run.sh").stat().st_mode & 0o111
    assert not (target / ".git").exists() and not (target / "__pycache__").exists()
    assert not archive.exists()
    assert parse_marker_output(SHELL.run(marker_command(str(target))).stdout) == (True, marker)
    # a second upload of another version keeps the first as .previous
    (local / "VERSION").write_text("v2.31.1-test\n")
    second = wanted_marker(DirectorySource(local))
    assert second != marker
    (target / "inventory").mkdir()
    archive.write_bytes(directory_tarball(local))
    assert SHELL.run(unpack_command(str(archive), str(target), 0, second)).ok
    assert (tmp_path / "bastion" / "kubespray.previous" / "inventory").is_dir()
    assert parse_marker_output(SHELL.run(marker_command(str(target))).stdout)[1] == second
    assert (target / MARKER).is_file()


def test_release_tarball_with_a_top_folder(tmp_path: Path) -> None:
    local = make_checkout(tmp_path / "kubespray-2.31.0")
    tarball = tmp_path / "kubespray-2.31.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(str(local), arcname="kubespray-2.31.0")
    assert tarball_strip_components(tarball) == 1
    assert tarball_member(tarball, "requirements.txt") == b"ansible-core==2.18.19\n"
    assert local_requirements(TarballSource(tarball)) == b"ansible-core==2.18.19\n"
    marker = wanted_marker(TarballSource(tarball))
    assert marker.kind == "tarball" and marker.label == "v2.31.0-test"
    target = tmp_path / "bastion" / "kubespray"
    copy = tmp_path / "upload"
    copy.write_bytes(tarball.read_bytes())
    assert SHELL.run(unpack_command(str(copy), str(target), 1, marker)).ok
    assert (target / "cluster.yml").is_file()
    flat = tmp_path / "flat.tar"
    with tarfile.open(flat, "w") as tar:
        tar.add(str(local / "cluster.yml"), arcname="cluster.yml")
        tar.add(str(local / "roles"), arcname="roles")
    assert tarball_strip_components(flat) == 0


def test_git_clone_command_clones_the_tag_shallowly(tmp_path: Path) -> None:
    origin = make_checkout(tmp_path / "origin")
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@example.test"]
    subprocess.run(["rm", "-rf", str(origin / ".git"), str(origin / "__pycache__")], check=True)
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    subprocess.run([*git, "tag", "v2.31.0"], check=True)
    (origin / "VERSION").write_text("after the tag\n")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)

    source = GitSource(f"file://{origin}", "v2.31.0")
    command = git_clone_command(source, str(tmp_path / "bastion" / "kubespray"))
    assert "--depth 1 --branch v2.31.0 -- " in command
    result = SHELL.run(command)
    assert result.ok, result.stderr
    target = tmp_path / "bastion" / "kubespray"
    assert (target / "VERSION").read_text() == "v2.31.0-test\n"
    log = subprocess.run(["git", "-C", str(target), "log", "--oneline"], capture_output=True,
                         text=True, check=True).stdout
    assert len(log.splitlines()) == 1
    assert parse_marker_output(SHELL.run(marker_command(str(target))).stdout)[1] == (
        wanted_marker(source))


@pytest.mark.parametrize("hostile", ["v1; touch /tmp/pwned", "$(id)"])
def test_git_command_quotes_everything(hostile: str) -> None:
    command = git_clone_command(GitSource(f"https://x.test/{hostile}", hostile), "/home/u/k s")
    assert f"'{hostile}'" in command and "'/home/u/k s.kubebastion-new'" in command


def test_a_new_checkout_keeps_the_generated_credentials(tmp_path: Path) -> None:
    """kubespray's generated secrets (inventory/<cluster>/credentials/) move into the new
    checkout byte for byte, mode kept; nothing else of the old inventory does."""
    local = make_checkout(tmp_path / "local")
    target = tmp_path / "bastion" / "kubespray"
    archive = tmp_path / "upload.tgz"
    archive.write_bytes(directory_tarball(local))
    assert SHELL.run(unpack_command(str(archive), str(target), 0,
                                    wanted_marker(DirectorySource(local)))).ok
    credentials = target / "inventory" / "lab" / "credentials"
    credentials.mkdir(parents=True)
    secret = credentials / "kube_encrypt_token.creds"
    secret.write_bytes(b"s3cr\x00t with spaces\n")
    secret.chmod(0o600)
    (target / "inventory" / "lab" / "hosts.yaml").write_text("rendered\n")
    (local / "VERSION").write_text("v2.31.1-test\n")
    archive.write_bytes(directory_tarball(local))
    assert SHELL.run(unpack_command(str(archive), str(target), 0,
                                    wanted_marker(DirectorySource(local)))).ok
    kept = target / "inventory" / "lab" / "credentials" / "kube_encrypt_token.creds"
    assert kept.read_bytes() == b"s3cr\x00t with spaces\n"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert not (target / "inventory" / "lab" / "hosts.yaml").exists()
