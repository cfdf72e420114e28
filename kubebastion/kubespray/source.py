"""The kubespray checkout on the bastion: cloned there, or uploaded from the operator.

Whatever the origin, the checkout carries a marker file, ``.kubebastion-source``, naming
what was put there (git URL and version, or the digest of the uploaded tree or tarball).
A run compares the wanted marker with the one on the bastion and does nothing when they
match, so a rerun costs one ``cat``. A new checkout is built beside the old one and
swapped in by rename; the previous one is kept as ``<dir>.previous``. The secrets kubespray
generated into ``inventory/<cluster>/credentials/`` move into the new checkout first.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kubebastion.kubespray.settings import (
    DirectorySource,
    GitSource,
    Source,
    TarballSource,
)
from kubebastion.ssh.remote import quote

MARKER = ".kubebastion-source"
#: Never uploaded: VCS data, caches, and inventories rendered locally by --render-to.
_SKIP_DIRS = {".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".tox", ".venv"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class SourceMarker:
    """What a checkout was made from; equality means "already there"."""

    kind: str
    identity: str  # git: "<url>@<version>"; upload: "sha256:<digest>"
    label: str  # for people: the version, or the VERSION file of an upload

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "identity": self.identity,
                           "label": self.label}, sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> SourceMarker | None:
        try:
            data = json.loads(text)
            return cls(str(data["kind"]), str(data["identity"]), str(data["label"]))
        except (ValueError, KeyError, TypeError):
            return None


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(_SKIP_SUFFIXES) and name != MARKER:
                yield Path(dirpath) / name


def tree_digest(root: Path) -> str:
    """sha256 over every uploaded file's path, executable bit and content (or link
    target): any edit to the local checkout changes it, a touch does not."""
    digest = hashlib.sha256()
    for path in _walk(root):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest.update(f"L {relative} {os.readlink(path)}\n".encode())
            continue
        executable = "x" if os.access(path, os.X_OK) else "-"
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(f"F {relative} {executable} {content}\n".encode())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def directory_tarball(root: Path) -> bytes:
    """A gzipped tar of the checkout, paths relative to its root, owners dropped."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in _walk(root):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def tarball_strip_components(path: Path) -> int:
    """1 when every member sits under one top folder (``kubespray-2.31.0/...``, as GitHub
    release tarballs do), else 0."""
    with tarfile.open(path) as tar:
        tops = {name.split("/", 1)[0] for name in tar.getnames() if name not in ("", ".")}
        nested = any("/" in name.lstrip("./") for name in tar.getnames())
    return 1 if len(tops) == 1 and nested else 0


def tarball_member(path: Path, name: str) -> bytes | None:
    """One file of a tarball, found with or without the top folder."""
    strip = tarball_strip_components(path)
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            parts = member.name.lstrip("./").split("/")[strip:]
            if "/".join(parts) == name and member.isfile():
                extracted = tar.extractfile(member)
                return extracted.read() if extracted is not None else None
    return None


def local_requirements(source: Source) -> bytes | None:
    """kubespray's requirements.txt read locally (None for a git source: it is on the
    bastion only)."""
    if isinstance(source, DirectorySource):
        return (source.path / "requirements.txt").read_bytes()
    if isinstance(source, TarballSource):
        return tarball_member(source.path, "requirements.txt")
    return None


def local_version_label(source: DirectorySource | TarballSource) -> str:
    if isinstance(source, DirectorySource):
        version_file = source.path / "VERSION"
        text = version_file.read_text().strip() if version_file.is_file() else ""
    else:
        member = tarball_member(source.path, "VERSION")
        text = member.decode(errors="replace").strip() if member else ""
    return text.splitlines()[0] if text else source.path.name


def wanted_marker(source: Source) -> SourceMarker:
    """The marker the checkout must carry; for uploads this reads (and hashes) local files."""
    if isinstance(source, GitSource):
        return SourceMarker("git", f"{source.url}@{source.version}", source.version)
    if isinstance(source, DirectorySource):
        return SourceMarker("directory", f"sha256:{tree_digest(source.path)}",
                            local_version_label(source))
    return SourceMarker("tarball", f"sha256:{file_digest(source.path)}",
                        local_version_label(source))


def marker_command(checkout_dir: str) -> str:
    """Prints the marker, ``none`` when the checkout has none, ``absent`` without a dir."""
    d = quote(checkout_dir)
    m = quote(f"{checkout_dir}/{MARKER}")
    return (f"if [ -f {m} ]; then cat {m}; elif [ -e {d} ]; then echo none; "
            "else echo absent; fi")


def parse_marker_output(stdout: str) -> tuple[bool, SourceMarker | None]:
    """(checkout folder exists, its marker)."""
    text = stdout.strip()
    if text == "absent":
        return False, None
    return True, SourceMarker.parse(text)


def keep_credentials_command(checkout_dir: str, staging: str) -> str:
    """Copy every ``inventory/<cluster>/credentials/`` of the current checkout into the new
    one: kubespray's ``lookup('password', credentials_dir ...)`` writes generated secrets
    there (``kube_encrypt_token.creds``, the key of ``kube_encrypt_secret_data``), and a new
    key would leave the cluster unable to read its own secrets. ``cp -a`` keeps content,
    modes and times."""
    d, s = quote(checkout_dir), quote(staging)
    return (f"if [ -d {d}/inventory ]; then (cd {d} && for c in inventory/*/credentials; do "
            f"if [ -d \"$c\" ]; then mkdir -p {s}/\"$c\" && cp -a \"$c\"/. {s}/\"$c\"/; fi; "
            "done); fi")


def _swap_in(staging: str, checkout_dir: str, marker: SourceMarker) -> list[str]:
    d, s = quote(checkout_dir), quote(staging)
    previous = quote(f"{checkout_dir}.previous")
    return [
        keep_credentials_command(checkout_dir, staging),
        f"printf '%s\\n' {quote(marker.to_json())} > {quote(staging + '/' + MARKER)}",
        f"if [ -e {d} ]; then rm -rf {previous}; mv {d} {previous}; fi",
        f"mv {s} {d}",
    ]


def git_clone_command(source: GitSource, checkout_dir: str) -> str:
    """Shallow clone of one tag/branch into a staging folder, then swapped in."""
    staging = f"{checkout_dir}.kubebastion-new"
    s = quote(staging)
    steps = [
        "set -e",
        f"rm -rf {s}",
        f"mkdir -p {quote(str(PurePosixPath(checkout_dir).parent))}",
        f"git -c advice.detachedHead=false clone --quiet --depth 1 --branch "
        f"{quote(source.version)} -- {quote(source.url)} {s}",
        *_swap_in(staging, checkout_dir, wanted_marker(source)),
    ]
    return "\n".join(steps)


def unpack_command(archive: str, checkout_dir: str, strip_components: int,
                   marker: SourceMarker) -> str:
    """Unpack an uploaded tarball into a staging folder, then swap it in."""
    staging = f"{checkout_dir}.kubebastion-new"
    s = quote(staging)
    strip = f" --strip-components={strip_components}" if strip_components else ""
    steps = [
        "set -e",
        f"rm -rf {s}",
        f"mkdir -p {s}",
        f"tar -xzf {quote(archive)} -C {s} --no-same-owner{strip}"
        if archive.endswith((".gz", ".tgz")) else
        f"tar -xf {quote(archive)} -C {s} --no-same-owner{strip}",
        *_swap_in(staging, checkout_dir, marker),
        f"rm -f {quote(archive)}",
    ]
    return "\n".join(steps)
