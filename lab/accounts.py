"""The lab's login user and its sudoers entry.

Lab hosts share the machine's /etc/passwd and /etc/shadow (only /home, /root, ... are
per host), so there is one real user for all of them. It is tagged through its GECOS
field so ``down`` deletes only a user the lab created, never a real account that
happens to have the same name.

sshd refuses key logins for a locked account ("!" password) even with ``UsePAM no``, so
the password field is ``*`` (no password, not locked) unless a sudo password is wanted,
in which case it is the real hash and sudo asks for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
from pathlib import Path

from lab.netns import run
from lab.topology import LabError, validate_user

GECOS_MARKER = "kubebastion lab user"
SUDOERS_DIR = Path("/etc/sudoers.d")


def sudoers_path(user: str) -> Path:
    return SUDOERS_DIR / f"kubebastion-lab-{user}"


def lab_user(user: str) -> pwd.struct_passwd | None:
    """The passwd entry if ``user`` exists and was made by the lab; raise if it is foreign."""
    validate_user(user)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    if entry.pw_gecos != GECOS_MARKER:
        raise LabError(
            f"user {user!r} exists but was not created by the lab (GECOS {entry.pw_gecos!r}); "
            "pick another lab user name (--user) instead of reusing a real account"
        )
    return entry


def ensure_user(user: str) -> tuple[int, int, bool]:
    """Create the lab user if missing (no home on the real /home). Returns (uid, gid, created)."""
    entry = lab_user(user)
    created = False
    if entry is None:
        run(
            [
                "useradd",
                "--no-create-home",
                "--home-dir",
                f"/home/{user}",
                "--shell",
                "/bin/bash",
                "--user-group",
                "--comment",
                GECOS_MARKER,
                user,
            ]
        )
        entry = pwd.getpwnam(user)
        created = True
    elif entry.pw_shell != "/bin/bash" or entry.pw_dir != f"/home/{user}":
        run(["usermod", "--shell", "/bin/bash", "--home", f"/home/{user}", user])
    return entry.pw_uid, entry.pw_gid, created


def _shadow_field(user: str) -> str | None:
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields and fields[0] == user and len(fields) > 1:
                return fields[1]
    except OSError:
        return None
    return None


def _crypt(password: str, setting: str) -> str | None:
    """crypt(3) from libcrypt via ctypes (the stdlib ``crypt`` module is deprecated)."""
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    fn = lib.crypt
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    fn.restype = ctypes.c_char_p
    out = fn(password.encode(), setting.encode())
    return out.decode() if out else None


def password_matches(user: str, sudo_password: str | None) -> bool:
    """Whether the shadow entry already is what ``sudo_password`` asks for (no-op ``up``)."""
    field = _shadow_field(user)
    if field is None:
        return False
    if sudo_password is None:
        return field == "*"
    if not field.startswith("$"):
        return False
    return _crypt(sudo_password, field) == field


def validate_sudo_password(sudo_password: str | None) -> None:
    """chpasswd's "user:password" line format cannot carry these; refuse before building."""
    if sudo_password is not None and (
        not sudo_password or ":" in sudo_password or "\n" in sudo_password
    ):
        raise LabError("the sudo password must be non-empty, without ':' or a newline")


def set_password(user: str, sudo_password: str | None) -> bool:
    """Make the password field match; returns whether anything changed."""
    if password_matches(user, sudo_password):
        return False
    if sudo_password is None:
        run(["usermod", "-p", "*", user])
    else:
        validate_sudo_password(sudo_password)
        # chpasswd reads "user:password" on stdin: the password never shows in argv.
        run(["chpasswd"], input=f"{user}:{sudo_password}\n")
    return True


def sudoers_text(user: str, password_required: bool) -> str:
    tag = "" if password_required else "NOPASSWD: "
    return (
        "# kubebastion lab: managed by lab/accounts.py, removed by `lab down`\n"
        f"Defaults:{user} lecture=never\n"
        f"{user} ALL=(ALL:ALL) {tag}ALL\n"
    )


def ensure_sudoers(user: str, password_required: bool) -> bool:
    """Install the sudoers drop-in after ``visudo -c`` accepts it; returns whether it changed.

    The temporary file has a '.' in its name, which sudo ignores in sudoers.d, so a
    half-written file can never be live.
    """
    path = sudoers_path(user)
    text = sudoers_text(user, password_required)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = SUDOERS_DIR / f".kubebastion-lab-{user}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o440)
    try:
        run(["visudo", "-c", "-q", "-f", str(tmp)])
    except LabError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return True


def remove_user(user: str) -> bool:
    """Delete the lab user and its sudoers file; leave any foreign account alone."""
    removed = False
    sudoers_path(user).unlink(missing_ok=True)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return False
    if entry.pw_gecos == GECOS_MARKER:
        run(["userdel", user])
        removed = True
    return removed
