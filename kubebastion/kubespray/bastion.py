"""Facts about the bastion that the kubespray parts need: one exec, one parser.

The home folder resolves ``~`` in remote paths (quoted paths are never expanded), the
Python version, machine and libc decide which wheels an offline venv needs, and the cores
and memory how many hosts ansible works on at once (``kubespray.forks``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kubebastion.errors import StepError
from kubebastion.ssh.remote import parse_key_values, quote


def facts_command(python: str = "python3") -> str:
    """One exec: the facts, with ``python`` (the interpreter chosen for the venv) giving
    the Python version and platform, and telling whether it can make a venv (Debian and
    Ubuntu leave ``ensurepip`` out until ``python3.X-venv`` is installed)."""
    py = quote(python)
    return "\n".join([
        'printf "home=%s\\n" "$HOME"',
        'printf "user=%s\\n" "$(id -un)"',
        f"{py} - <<'EOF' 2>/dev/null || echo python=",
        "import platform, sys",
        'print("python=%d.%d.%d" % sys.version_info[:3])',
        'print("machine=" + platform.machine())',
        'print("libc=" + " ".join(platform.libc_ver()))',
        "EOF",
        f"if {py} -c 'import venv, ensurepip' >/dev/null 2>&1; then echo venv=yes; "
        "else echo venv=no; fi",
        'if command -v git >/dev/null 2>&1; then echo git=yes; else echo git=no; fi',
        'printf "cpus=%s\\n" "$(nproc 2>/dev/null)"',
        "sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/mem_total_kb=\\1/p;"
        "s/^MemAvailable: *\\([0-9]*\\) kB$/mem_available_kb=\\1/p' /proc/meminfo "
        "2>/dev/null || true",
    ])


FACTS_COMMAND = facts_command()


@dataclass(frozen=True)
class BastionFacts:
    home: str
    user: str
    python: str  # "3.11.2", "" when the interpreter is missing (see kubespray.python)
    machine: str  # "x86_64", "aarch64"
    libc: str  # "glibc 2.36", "" when unknown (musl)
    git: bool
    venv: bool = True  # the interpreter can create a venv (ensurepip is there)
    cpus: int = 0  # nproc, 0 when unknown
    mem_total_mb: int = 0  # 0 when unknown
    mem_available_mb: int = 0  # MemAvailable: what can be used without swapping; 0: unknown

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def python_minor(self) -> str:
        """``3.11``: what pip's ``--python-version`` wants."""
        return ".".join(self.python.split(".")[:2])


def parse_facts(stdout: str) -> BastionFacts:
    values = parse_key_values(stdout)
    home = values.get("home", "")
    if not home.startswith("/"):
        raise StepError(f"cannot tell the bastion user's home folder (got {home!r})")
    return BastionFacts(home=home, user=values.get("user", ""),
                        python=values.get("python", ""),
                        machine=values.get("machine", ""), libc=values.get("libc", ""),
                        git=values.get("git") == "yes", venv=values.get("venv") == "yes",
                        cpus=_number(values.get("cpus")),
                        mem_total_mb=_number(values.get("mem_total_kb")) // 1024,
                        mem_available_mb=_number(values.get("mem_available_kb")) // 1024)


def _number(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0
