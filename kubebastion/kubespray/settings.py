"""What the kubespray step should use: which source, where on the bastion, how long to wait.

Settings come from the inventory (``defaults.yaml`` ``data: kubespray:``) so a lab or an
air-gapped site describes its setup once, and command-line options override them for one
run. Everything is checked here, before any SSH, and an unknown key is an error rather
than a silently ignored typo.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kubebastion.errors import ConfigError
from kubebastion.kubespray.options import PlaybookOptions, playbook_options

DEFAULT_VERSION = "v2.31.0"
DEFAULT_REPOSITORY = "https://github.com/kubernetes-sigs/kubespray.git"
DEFAULT_CHECKOUT_DIR = "~/kubespray"
DEFAULT_VENV_DIR = "~/kubespray-venv"
DEFAULT_REMOTE_LOG_DIR = "~/kubebastion-logs"
DEFAULT_LOG_DIR = "logs"
#: Where kubebastion keeps wheels, on the operator's machine (the cache of wheels downloaded
#: for bastions, ``wheelhouse: true``) as on the bastion (the wheelhouses uploaded to it).
WHEEL_CACHE = "~/.cache/kubebastion/wheelhouse"
#: kubespray on real machines takes 10-40 minutes; an hour leaves room for slow mirrors.
DEFAULT_TIMEOUT = 3600.0
#: After a successful playbook, how long the nodes get to report Ready.
DEFAULT_READY_TIMEOUT = 180.0

TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_KEYS = {"version", "source", "checkout_dir", "venv_dir", "wheelhouse", "timeout",
         "ready_timeout", "log_dir", "remote_log_dir", "python", "source_sha256",
         "extra_vars", "preflight", "uv", "forks"}
#: ``forks`` above this is a typo, not a bastion (each fork is a process of tens of MB).
MAX_FORKS = 1000
#: The bastion's interpreter for the venv: a command name or an absolute path.
DEFAULT_PYTHON = "python3"
_PYTHON = re.compile(r"^(/[A-Za-z0-9._+/-]+|[A-Za-z0-9][A-Za-z0-9._+-]*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:")


@dataclass(frozen=True)
class GitSource:
    """Clone ``url`` at ``version`` on the bastion (it needs internet)."""

    url: str
    version: str

    def describe(self) -> str:
        return f"{self.url} at {self.version}"


@dataclass(frozen=True)
class DirectorySource:
    """Upload a local kubespray checkout (offline bastion)."""

    path: Path

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class TarballSource:
    """Upload a local kubespray release tarball (offline bastion); ``sha256``, when
    given, was checked against the file before anything was uploaded."""

    path: Path
    sha256: str | None = None

    def describe(self) -> str:
        return str(self.path)


Source = GitSource | DirectorySource | TarballSource


@dataclass(frozen=True)
class KubespraySettings:
    source: Source
    version: str
    checkout_dir: str
    venv_dir: str
    wheelhouse: Path | None
    timeout: float
    ready_timeout: float
    log_dir: Path
    remote_log_dir: str
    force: bool = False
    python: str = DEFAULT_PYTHON
    #: The user's --tags/--skip-tags/--limit/-e for the playbook.
    playbook: PlaybookOptions = field(default_factory=PlaybookOptions)
    #: Run kubespray's own quick checks (``--tags facts,asserts``) before the long run.
    preflight: bool = True
    #: Build the venv with uv when the bastion can have it (else pip; see ``venv``).
    uv: bool = True
    #: ansible's forks; None: chosen from the hosts and the bastion (see ``forks``).
    forks: int | None = None


def is_git_url(value: str) -> bool:
    return "://" in value or bool(_SCP_LIKE.match(value))


def parse_source(value: str | None, version: str, base_dir: Path) -> Source:
    """A git URL, a local directory or a local tarball; local paths must exist now."""
    if value is None or value == "":
        return GitSource(DEFAULT_REPOSITORY, version)
    if is_git_url(value):
        return GitSource(value, version)
    path = (base_dir / Path(value).expanduser()).resolve()
    if path.is_dir():
        missing = [n for n in ("cluster.yml", "requirements.txt") if not (path / n).is_file()]
        if missing:
            raise ConfigError(f"kubespray source {path} is not a kubespray checkout "
                              f"(missing {', '.join(missing)})")
        return DirectorySource(path)
    if path.is_file() and path.name.endswith(TARBALL_SUFFIXES):
        return TarballSource(path)
    if path.exists():
        raise ConfigError(f"kubespray source {path} must be a directory or a "
                          f"{'/'.join(TARBALL_SUFFIXES)} file")
    raise ConfigError(f"kubespray source {value!r} is neither a git URL nor an existing "
                      f"path (looked for {path})")


def expand_home(path: str, home: str) -> str:
    """Resolve a leading ``~`` against the bastion user's home (quoted paths are never
    expanded by the remote shell, so we do it ourselves)."""
    if path == "~":
        return home
    if path.startswith("~/"):
        return str(PurePosixPath(home) / path[2:])
    return path


def settings_from(
    data: Mapping[str, Any] | None,
    base_dir: Path,
    *,
    source: str | None = None,
    version: str | None = None,
    wheelhouse: str | None = None,
    timeout: float | None = None,
    log_dir: str | None = None,
    force: bool = False,
    source_sha256: str | None = None,
    tags: str = "",
    skip_tags: str = "",
    limit: str = "",
    extra_vars: Sequence[str] = (),
    preflight: bool | None = None,
) -> KubespraySettings:
    """Merge the inventory's ``kubespray:`` mapping (paths relative to ``base_dir``, the
    config file's folder) with command-line overrides (paths relative to the cwd).
    Command-line extra vars come after the inventory's ``extra_vars``, so they win."""
    data = dict(data or {})
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown kubespray setting(s): {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(_KEYS))})")
    cwd = Path.cwd()
    chosen_version = version or _text(data, "version") or DEFAULT_VERSION
    if not _GIT_REF.fullmatch(chosen_version):
        raise ConfigError(f"kubespray version {chosen_version!r} is not a git tag or branch")
    if source is not None:
        parsed_source = parse_source(source, chosen_version, cwd)
    else:
        parsed_source = parse_source(_text(data, "source"), chosen_version, base_dir)
    parsed_source = _checked(parsed_source, source_sha256 or _text(data, "source_sha256"))
    configured_vars = data.get("extra_vars") or []
    if not isinstance(configured_vars, list):
        raise ConfigError("kubespray setting extra_vars must be a list of key=value or "
                          f"JSON strings, not {configured_vars!r}")
    chosen_preflight = data.get("preflight", True) if preflight is None else preflight
    if not isinstance(chosen_preflight, bool):
        raise ConfigError(f"kubespray setting preflight must be true or false, not "
                          f"{chosen_preflight!r}")
    chosen_uv = data.get("uv", True)
    if not isinstance(chosen_uv, bool):
        raise ConfigError(f"kubespray setting uv must be true or false, not {chosen_uv!r}")
    return KubespraySettings(
        source=parsed_source,
        version=chosen_version,
        checkout_dir=_remote_dir(data, "checkout_dir", DEFAULT_CHECKOUT_DIR),
        venv_dir=_remote_dir(data, "venv_dir", DEFAULT_VENV_DIR),
        wheelhouse=_wheelhouse(wheelhouse, data.get("wheelhouse"), cwd, base_dir),
        timeout=_seconds(timeout if timeout is not None else data.get("timeout"),
                         "timeout", DEFAULT_TIMEOUT),
        ready_timeout=_seconds(data.get("ready_timeout"), "ready_timeout",
                               DEFAULT_READY_TIMEOUT),
        log_dir=(cwd / log_dir) if log_dir else base_dir / (_text(data, "log_dir")
                                                           or DEFAULT_LOG_DIR),
        remote_log_dir=_remote_dir(data, "remote_log_dir", DEFAULT_REMOTE_LOG_DIR),
        force=force,
        python=_python(data),
        playbook=playbook_options(tags=tags, skip_tags=skip_tags, limit=limit,
                                  extra_vars=[*configured_vars, *extra_vars]),
        preflight=chosen_preflight,
        uv=chosen_uv,
        forks=_forks(data.get("forks")),
    )


def _forks(value: object) -> int | None:
    """``forks: 20`` sets ansible's forks; absent or ``auto``: kubebastion chooses."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FORKS:
        raise ConfigError(f"kubespray setting forks must be auto or a whole number from 1 "
                          f"to {MAX_FORKS}, not {value!r}")
    return value


def _checked(source: Source, sha256: str | None) -> Source:
    """A tarball whose content is the one the user pinned, checked before any upload."""
    if sha256 is None or sha256 == "":
        return source
    wanted = sha256.strip().lower().removeprefix("sha256:")
    if not _SHA256.fullmatch(wanted):
        raise ConfigError(f"kubespray source_sha256 {sha256!r} is not a sha256 (64 hex "
                          "digits)")
    if not isinstance(source, TarballSource):
        raise ConfigError("kubespray source_sha256 applies to a tarball source, not to "
                          f"{source.describe()}")
    digest = hashlib.sha256()
    with source.path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != wanted:
        raise ConfigError(f"kubespray source {source.path} has sha256 {digest.hexdigest()}, "
                          f"not the expected {wanted} (source_sha256): a different or "
                          "damaged file; nothing was uploaded")
    return TarballSource(source.path, wanted)


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"kubespray setting {key} must be a string, not {value!r}")
    return value


def _python(data: Mapping[str, Any]) -> str:
    value = _text(data, "python") or DEFAULT_PYTHON
    if not _PYTHON.fullmatch(value):
        raise ConfigError(f"kubespray setting python {value!r} must be a command name "
                          "(python3.11) or an absolute path (/usr/bin/python3.11)")
    return value


def _remote_dir(data: Mapping[str, Any], key: str, default: str) -> str:
    value = _text(data, key) or default
    if not (value.startswith(("/", "~/"))) or "\n" in value or value.rstrip("/") in ("", "~"):
        raise ConfigError(f"kubespray setting {key} {value!r} must be an absolute path or "
                          "start with ~/ (a folder of its own)")
    return value.rstrip("/")


def default_wheelhouse() -> Path:
    """The operator's wheel cache (``wheelhouse: true``), ``~`` expanded."""
    return Path(WHEEL_CACHE).expanduser()


def _wheelhouse(cli: str | None, configured: object, cwd: Path, base: Path) -> Path | None:
    if cli:
        return (cwd / Path(cli).expanduser()).resolve()
    if configured is None or configured is False:
        return None
    if configured is True:
        return default_wheelhouse()
    if not isinstance(configured, str):
        raise ConfigError("kubespray setting wheelhouse must be a folder or true, not "
                          f"{configured!r}")
    return (base / Path(configured).expanduser()).resolve()


def _seconds(value: object, name: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"kubespray {name} must be a positive number of seconds, "
                          f"not {value!r}")
    return float(value)
