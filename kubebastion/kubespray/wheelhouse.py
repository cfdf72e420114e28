"""An offline bastion's venv needs wheels built for *its* Python and platform: download
them here, on the operator's machine, with pip, and cache them by what decides them.

``pip download --only-binary=:all: --python-version X.Y --platform ...`` resolves
kubespray's ``requirements.txt`` for the bastion, not for this machine. The cache key is the
requirements' hash plus the bastion's Python, machine and libc, so a rerun (or a second
cluster with the same bastion image) downloads nothing. A folder that already holds
``*.whl`` files is taken as a ready-made wheelhouse and used as it is (for an operator
machine that is itself offline).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from kubebastion.errors import StepError
from kubebastion.kubespray.bastion import BastionFacts
from kubebastion.ssh.remote import quote

COMPLETE_MARKER = ".kubebastion-complete"
_OLDEST_GLIBC_MINOR = 5  # manylinux1 == manylinux_2_5


def platform_tags(machine: str, libc: str) -> list[str]:
    """Every wheel platform tag the bastion accepts, newest first (pip does not expand a
    ``manylinux_2_N`` tag to older ones by itself)."""
    if not machine:
        raise StepError("cannot tell the bastion's machine type for its wheels")
    name, _, version = libc.partition(" ")
    tags: list[str] = []
    if name == "glibc" and version.count(".") >= 1:
        major, minor = (int(part) for part in version.split(".")[:2])
        if major == 2:
            tags += [f"manylinux_2_{m}_{machine}"
                     for m in range(minor, _OLDEST_GLIBC_MINOR - 1, -1)]
            tags += [f"manylinux2014_{machine}", f"manylinux2010_{machine}",
                     f"manylinux1_{machine}"]
    else:  # musl (platform.libc_ver() says nothing): musllinux wheels
        tags += [f"musllinux_1_{m}_{machine}" for m in range(2, 0, -1)]
    return tags


def cache_key(requirements: bytes, facts: BastionFacts) -> str:
    digest = hashlib.sha256()
    for part in (requirements, facts.python_minor.encode(), facts.machine.encode(),
                 facts.libc.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:20]


def pip_download_command(requirements_file: Path, destination: Path,
                         facts: BastionFacts) -> list[str]:
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--quiet", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", facts.python_minor,
               "-r", str(requirements_file), "-d", str(destination)]
    for tag in platform_tags(facts.machine, facts.libc):
        command += ["--platform", tag]
    return command


def is_prebuilt(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.whl"))


def wheelhouse_for(root: Path, requirements: bytes, facts: BastionFacts) -> Path:
    """The folder of wheels for this bastion: ``root`` itself when it already holds
    wheels, else ``root/<key>``, downloaded once."""
    if is_prebuilt(root):
        return root
    folder = root / cache_key(requirements, facts)
    if (folder / COMPLETE_MARKER).is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        requirements_file = staging / "requirements.txt"
        requirements_file.write_bytes(requirements)
        wheels = staging / "wheels"
        proc = subprocess.run(pip_download_command(requirements_file, wheels, facts),
                              capture_output=True, text=True, check=False, timeout=1800)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise StepError(
                f"pip download of kubespray's requirements for the bastion (Python "
                f"{facts.python_minor}, {facts.machine}) failed: {' / '.join(tail)}")
        (wheels / COMPLETE_MARKER).write_text(hashlib.sha256(requirements).hexdigest() + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        wheels.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def wheel_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.whl"))


def wheelhouse_tarball(folder: Path) -> bytes:
    """An uncompressed tar of the wheels (they are zip files already)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for wheel in wheel_files(folder):
            tar.add(str(wheel), arcname=wheel.name)
    return buffer.getvalue()


def wheelhouse_id(folder: Path) -> str:
    """Names the uploaded copy on the bastion: changes when any wheel does."""
    digest = hashlib.sha256()
    for wheel in wheel_files(folder):
        digest.update(f"{wheel.name} {wheel.stat().st_size}\n".encode())
    return digest.hexdigest()[:20]


def remote_present_command(remote_dir: str) -> str:
    marker = quote(f"{remote_dir}/{COMPLETE_MARKER}")
    return f"if [ -f {marker} ]; then echo present; else echo absent; fi"


def remote_unpack_command(archive: str, remote_dir: str) -> str:
    """Unpack the uploaded wheels beside their final place, mark complete, rename."""
    d, staging = quote(remote_dir), quote(f"{remote_dir}.new")
    return "\n".join([
        "set -e",
        f"rm -rf {staging}",
        f"mkdir -p {staging}",
        f"tar -xf {quote(archive)} -C {staging} --no-same-owner",
        f"touch {quote(f'{remote_dir}.new/{COMPLETE_MARKER}')}",
        f"rm -rf {d}",
        f"mv {staging} {d}",
        f"rm -f {quote(archive)}",
    ])
