"""Facts about the bastion that the kubespray parts need: one exec, one parser.

The home folder resolves ``~`` in remote paths (quoted paths are never expanded), and the
Python version, machine and libc decide which wheels an offline venv needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubebastion.errors import StepError

FACTS_COMMAND = "\n".join([
    'printf "home=%s\\n" "$HOME"',
    'printf "user=%s\\n" "$(id -un)"',
    "python3 - <<'EOF' 2>/dev/null || echo python=",
    "import platform, sys",
    'print("python=%d.%d.%d" % sys.version_info[:3])',
    'print("machine=" + platform.machine())',
    'print("libc=" + " ".join(platform.libc_ver()))',
    "EOF",
    'if command -v git >/dev/null 2>&1; then echo git=yes; else echo git=no; fi',
])


@dataclass(frozen=True)
class BastionFacts:
    home: str
    user: str
    python: str  # "3.11.2", "" when python3 is missing
    machine: str  # "x86_64", "aarch64"
    libc: str  # "glibc 2.36", "" when unknown (musl)
    git: bool

    @property
    def python_minor(self) -> str:
        """``3.11``: what pip's ``--python-version`` wants."""
        return ".".join(self.python.split(".")[:2])


def parse_facts(stdout: str) -> BastionFacts:
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    home = values.get("home", "")
    if not home.startswith("/"):
        raise StepError(f"cannot tell the bastion user's home folder (got {home!r})")
    if not values.get("python"):
        raise StepError("python3 is missing on the bastion: ansible needs it "
                        "(install python3 and python3-venv)")
    return BastionFacts(home=home, user=values.get("user", ""), python=values["python"],
                        machine=values.get("machine", ""), libc=values.get("libc", ""),
                        git=values.get("git") == "yes")
