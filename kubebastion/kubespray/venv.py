"""The venv on the bastion with kubespray's own ``requirements.txt``.

The venv carries a marker holding the sha256 of the requirements it was built from; when
the checkout's requirements hash the same and ``ansible-playbook`` is there, nothing is
done. Otherwise a new venv is built beside the one in use, in
``<venv_dir>.kubebastion-<id>``, and swapped in only when complete: ``<venv_dir>`` is a
symlink to the build, replaced by a rename. (A venv cannot be built in one place and
moved: its scripts name their interpreter by absolute path. Hence the link.)

An interrupted build (Ctrl-C, a lost connection) leaves only such a folder, which is not
what the link points at: the next run recognises it as ours by its name and removes it.
Before, the venv was rebuilt in place with ``venv --clear``, and an interrupt left a
folder that was no venv any more, which every later run refused to touch. A real folder at
``<venv_dir>`` (a venv made by hand, or by an older kubebastion) is kept as
``<venv_dir>.previous`` when the first link replaces it.

The venv is built with uv when the bastion can have it (issue 16: kubespray v2.31.0's
requirements in about 3 s with uv, 20 s with pip), else with pip: uv sent with the
wheelhouse for an offline bastion, or installed from PyPI into a small tool venv of its
own (kept, for the next build) for an online one. Whether uv runs is found out by the
build script itself, in the same exec: it prints which installer it used and, for pip,
why (``parse_installer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from kubebastion.errors import StepError
from kubebastion.ssh.remote import Explanations, explain, quote

MARKER = ".kubebastion-requirements.sha256"
BUILD_INFIX = ".kubebastion-"
_INSTALLER, _WHY = "kubebastion-installer=", "kubebastion-why="
#: uv: never download a Python, never read a uv.toml or pyproject of the bastion user's.
_UV_ENV = "UV_PYTHON_DOWNLOADS=never UV_NO_CONFIG=1 UV_NO_PROGRESS=1"


@dataclass(frozen=True)
class UvPlan:
    """Where the build finds uv on the bastion. ``install``: a command that puts it there
    when it is missing ("" when it must already be there); ``origin``: said in the
    report."""

    binary: str
    origin: str
    install: str = ""


def uv_from_pypi(tool_dir: str, version: str, python: str) -> UvPlan:
    """uv for an online bastion: ``uv==version`` from PyPI into a venv of its own at
    ``tool_dir`` (once; later builds reuse it). pip gives up after one try, so an offline
    bastion falls back to pip in seconds rather than after pip's five retries."""
    tool = quote(tool_dir)
    return UvPlan(
        binary=str(PurePosixPath(tool_dir) / "bin/uv"),
        origin=f"uv {version} from PyPI (in {tool_dir})",
        install=(f"rm -rf {tool} && {quote(python)} -m venv {tool} && "
                 f"{quote(str(PurePosixPath(tool_dir) / 'bin/pip'))} install "
                 "--disable-pip-version-check --quiet --retries 0 --timeout 15 "
                 f"{quote(f'uv=={version}')}"))


@dataclass(frozen=True)
class Installer:
    """What built the venv, and why that one: said in the report."""

    name: str  # "uv" or "pip"
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


def parse_installer(stdout: str, uv: UvPlan | None, no_uv_reason: str) -> Installer:
    """Which installer the build script used; for pip, why (the script's reason when uv
    was tried, else ``no_uv_reason``)."""
    name = why = ""
    for line in stdout.splitlines():
        if line.startswith(_INSTALLER):
            name = line[len(_INSTALLER):].strip()
        elif line.startswith(_WHY):
            why = line[len(_WHY):].strip()
    if name == "uv" and uv is not None:
        return Installer("uv", uv.origin)
    if uv is None:
        return Installer("pip", no_uv_reason)
    return Installer("pip", f"uv did not run on the bastion ({why or 'no output'})")


@dataclass(frozen=True)
class VenvState:
    requirements_sha256: str  # of the checkout's requirements.txt, "" when absent
    built_from: str  # the venv's marker, "" when none
    has_ansible: bool
    is_venv: bool  # the folder holds a pyvenv.cfg
    exists: bool
    python: str = ""  # the venv's own Python version, "" when unknown
    is_link: bool = False  # <venv_dir> is a symlink (to one of our builds)
    leftovers: tuple[str, ...] = ()  # our build folders the link does not point at

    def made_by(self, python: str) -> bool:
        """Made by that Python minor version (or unknown): a venv made by another one is
        rebuilt when the ``python`` setting changes."""
        return not self.python or self.python.split(".")[:2] == python.split(".")[:2]

    @property
    def up_to_date(self) -> bool:
        return bool(self.requirements_sha256) and self.has_ansible and (
            self.built_from == self.requirements_sha256)


def requirements_path(checkout_dir: str) -> str:
    return str(PurePosixPath(checkout_dir) / "requirements.txt")


def build_dir(venv_dir: str, build_id: str) -> str:
    return f"{venv_dir}{BUILD_INFIX}{build_id}"


def state_command(venv_dir: str, checkout_dir: str) -> str:
    v = PurePosixPath(venv_dir)
    d = quote(venv_dir)
    req = quote(requirements_path(checkout_dir))
    return "\n".join([
        f"if [ -f {req} ]; then printf 'requirements=%s\\n' \"$(sha256sum < {req} | "
        "cut -d' ' -f1)\"; fi",
        f"if [ -f {quote(str(v / MARKER))} ]; then printf 'built=%s\\n' "
        f"\"$(cat {quote(str(v / MARKER))})\"; fi",
        f"if [ -x {quote(str(v / 'bin/ansible-playbook'))} ]; then echo ansible=yes; fi",
        f"if [ -f {quote(str(v / 'pyvenv.cfg'))} ]; then echo venv=yes; fi",
        f"if [ -e {d} ] || [ -L {d} ]; then echo exists=yes; fi",
        f"target=; if [ -L {d} ]; then echo link=yes; target=$(readlink {d}); fi",
        f"for b in {d}{BUILD_INFIX}*; do",
        '  if [ -d "$b" ] && [ ! -L "$b" ] && [ "$b" != "$target" ]; then',
        "    printf 'leftover=%s\\n' \"$b\"",
        "  fi",
        "done",
        f"if [ -x {quote(str(v / 'bin/python3'))} ]; then printf 'python=%s\\n' "
        f"\"$({quote(str(v / 'bin/python3'))} -c 'import sys; "
        "print(\"%d.%d.%d\" % sys.version_info[:3])' 2>/dev/null)\"; fi",
    ])


def parse_state(stdout: str, venv_dir: str = "") -> VenvState:
    """The state; ``leftovers`` only keeps folders named as our builds of ``venv_dir``
    (nothing else is ever removed)."""
    values: dict[str, str] = {}
    leftovers = []
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "leftover":
            if venv_dir and value.startswith(f"{venv_dir}{BUILD_INFIX}") and "/" not in (
                    value[len(venv_dir):]):
                leftovers.append(value)
            continue
        values[key.strip()] = value.strip()
    return VenvState(
        requirements_sha256=values.get("requirements", ""),
        built_from=values.get("built", ""),
        has_ansible=values.get("ansible") == "yes",
        is_venv=values.get("venv") == "yes",
        exists=values.get("exists") == "yes",
        python=values.get("python", ""),
        is_link=values.get("link") == "yes",
        leftovers=tuple(leftovers),
    )


def cleanup_command(leftovers: tuple[str, ...]) -> str:
    """Remove half-built venvs of earlier, interrupted runs."""
    return "rm -rf -- " + " ".join(quote(path) for path in leftovers)


def build_command(venv_dir: str, checkout_dir: str, requirements_sha256: str,
                  find_links: str | None, build_id: str, python: str = "python3",
                  uv: UvPlan | None = None) -> str:
    """Build the venv in ``build_dir(venv_dir, build_id)`` with ``python`` and install the
    requirements, from PyPI or, with ``find_links``, only from that folder of wheels; mark
    it, then swap it in: the link is replaced by a rename, the build it pointed at removed.
    With ``uv``: by uv when it runs (installed first when the plan says how), else by pip;
    the first output line says which (``parse_installer``)."""
    build = build_dir(venv_dir, build_id)
    b, d = quote(build), quote(venv_dir)
    link = quote(f"{venv_dir}{BUILD_INFIX}link")
    pip = quote(str(PurePosixPath(build) / "bin/pip"))
    requirements = quote(requirements_path(checkout_dir))
    offline = f" --no-index --find-links {quote(find_links)}" if find_links else ""
    # --no-compile: pip byte-compiles all ~50,000 files of ansible 11's collections, of
    # which a playbook imports a few hundred (Python compiles those on first import).
    # Measured on 2 cores from a local wheelhouse of kubespray v2.31.0's requirements:
    # 41.0 s and 577 MB with compiling, 7.7 s and 333 MB without; the first
    # ansible-playbook run then costs about 0.8 s more, later runs the same. (uv does
    # not compile unless asked.)
    with_pip = [f"{quote(python)} -m venv {b}",
                f"{pip} install --disable-pip-version-check --no-compile --quiet{offline} "
                f"-r {requirements}"]
    if uv is None:
        chosen = [f"echo {_INSTALLER}pip", *with_pip]
    else:
        binary = quote(uv.binary)
        missing = quote(f"{uv.binary} is missing or not executable")
        get = (f"[ -x {binary} ] || {{ {uv.install}; }}" if uv.install else
               f"[ -x {binary} ] || {{ echo {missing}; exit 1; }}")
        chosen = [
            f"if why=$( ( {get} ) 2>&1 && {binary} --version 2>&1 >/dev/null ); then",
            f"  echo {_INSTALLER}uv",
            f"  {_UV_ENV} {binary} venv --quiet --python {quote(python)} {b}",
            f"  {_UV_ENV} {binary} pip install --quiet --python "
            f"{quote(str(PurePosixPath(build) / 'bin/python'))}{offline} -r {requirements}",
            "else",
            f"  echo {_INSTALLER}pip",
            f"  printf '{_WHY}%s\\n' \"$(printf '%s' \"$why\" | tr '\\n' ' ' | tail -c 300)\"",
            *(f"  {line}" for line in with_pip),
            "fi",
        ]
    return "\n".join([
        "set -e",
        f"mkdir -p {quote(str(PurePosixPath(venv_dir).parent))}",
        *chosen,
        f"printf '%s\\n' {quote(requirements_sha256)} > {quote(build + '/' + MARKER)}",
        f"old=; if [ -L {d} ]; then old=$(readlink {d}); "
        f"elif [ -e {d} ]; then rm -rf {quote(venv_dir + '.previous')}; "
        f"mv {d} {quote(venv_dir + '.previous')}; fi",
        f"rm -f {link}",
        f"ln -s {b} {link}",
        f"mv -Tf {link} {d}",
        f'case "$old" in {d}{BUILD_INFIX}*) rm -rf -- "$old" ;; esac',
    ])


_BUILD_FAILURES: Explanations = (
    (("ensurepip is not available", "no module named venv"),
     "python3-venv is missing on the bastion: install it (apt-get install python3-venv)"),
    (("no matching distribution", "could not find a version"),
     "pip found no matching version of kubespray's requirements (an offline bastion needs "
     "--wheelhouse; kubespray v2.31 needs Python 3.11-3.13)"),
)


def explain_build_failure(stderr: str) -> str:
    """The operator's next step for the usual ways a venv build fails (else its last line)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return explain(stderr, _BUILD_FAILURES) or (lines[-1] if lines else "no error output")


def check_replaceable(state: VenvState, venv_dir: str) -> None:
    """Never move away a folder that is not a venv: it may be someone's data."""
    if state.exists and not state.is_venv and not state.is_link:
        raise StepError(f"{venv_dir} on the bastion exists but is not a venv (no "
                        "pyvenv.cfg): move it away or set kubespray venv_dir")
