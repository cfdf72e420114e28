"""Ed25519 key pairs in OpenSSH format, and their fingerprints.

Generated in-process with ``cryptography`` (already installed as Paramiko's
dependency) rather than by 60+ ``ssh-keygen`` runs: a full-size lab needs a host key per
host, and the fingerprint is needed anyway for lab.json.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path


def generate_keypair(private_path: Path, comment: str) -> str:
    """Write a new ed25519 key to ``private_path`` (0600) and ``.pub``; return the public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    line = f"{public} {comment}\n"
    private_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_path.with_name(private_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    os.chmod(tmp, 0o600)
    os.replace(tmp, private_path)
    public_path(private_path).write_text(line)
    return line


def public_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def read_public(private_path: Path) -> str:
    """The ``type base64`` part of the key's .pub file (comment dropped)."""
    parts = public_path(private_path).read_text().split()
    return f"{parts[0]} {parts[1]}"


def fingerprint(public_line: str) -> str:
    """OpenSSH SHA256 fingerprint (``SHA256:...``, as ``ssh-keygen -lf`` and sshd logs print)."""
    blob = base64.b64decode(public_line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def ensure_keypair(private_path: Path, comment: str) -> str:
    """Reuse an existing valid pair (idempotent ``up``) or make one; return the public part."""
    try:
        if private_path.stat().st_size > 0:
            return read_public(private_path)
    except (OSError, IndexError):
        pass
    generate_keypair(private_path, comment)
    return read_public(private_path)
