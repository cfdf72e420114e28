"""Installing a missing package on the bastion (``nftables`` for NAT): the pure parts.

Installing is only worth trying when it can work: a package manager kubebastion knows
(apt-get on Debian/Ubuntu, dnf on the RHEL family) and a package source the bastion can
reach, i.e. a local one (``file:`` URIs: an offline mirror on disk) or a mirror (or the
configured apt proxy) that answers a TCP connect. Otherwise the step stops before any
change with what to do by hand. The reachability probe is the egress check's (one
``python3`` connecting to every host at once), run on the bastion itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from kubebastion.cluster import EgressTarget
from kubebastion.errors import StepError
from kubebastion.nat.plan import MARK, split_sections

NFTABLES = "nftables"
#: What a package source's listing may hold: apt one-line and deb822 files, dnf .repo files.
SOURCE_GLOBS = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list",
                "/etc/apt/sources.list.d/*.sources", "/etc/yum.repos.d/*.repo")
#: apt waits this long for the dpkg lock (unattended-upgrades holds it on a fresh VM).
LOCK_TIMEOUT = 300
_URL = re.compile(r"(?:https?|ftp|file|cdrom|mirror\+\w+|tor\+\w+):[^\s\]\"']+")


@dataclass(frozen=True)
class PackageFacts:
    """What the bastion has to install packages with."""

    manager: str | None  # "apt-get", "dnf", or None
    os_id: str
    sources: tuple[str, ...]  # package source URLs, in file order
    proxy: str | None  # apt's Acquire::http(s)::Proxy, when set

    @property
    def local_source(self) -> bool:
        return any(url.startswith(("file:", "cdrom:")) for url in self.sources)


def facts_command() -> str:
    """One script printing marked sections for :func:`parse_facts` (read-only)."""
    globs = " ".join(SOURCE_GLOBS)
    return "\n".join([
        f"mark() {{ printf '\\n{MARK}%s\\n' \"$1\"; }}",
        "mark managers; for m in apt-get dnf; do command -v \"$m\" >/dev/null 2>&1 && "
        "echo \"$m\"; done; true",
        "mark os_id; (. /etc/os-release 2>/dev/null && echo \"$ID\") || true",
        f"mark sources; for f in {globs}; do [ -f \"$f\" ] && cat \"$f\" && echo; done; true",
        "mark proxy; if command -v apt-config >/dev/null 2>&1; then apt-config dump "
        "2>/dev/null | grep -iE '^Acquire::https?::Proxy ' || true; fi",
    ])


def source_urls(text: str) -> tuple[str, ...]:
    """URLs of enabled package sources: apt one-line (``deb [opts] URL suite``), deb822
    (``URIs:``, ``Enabled: no`` skipped) and dnf (``baseurl``/``mirrorlist``/``metalink``,
    ``enabled=0`` skipped) listings, concatenated."""
    urls: list[str] = []
    stanza: list[str] = []
    enabled = True
    for raw in [*text.splitlines(), ""]:
        line = raw.split("#", 1)[0].strip()
        lower = line.lower().replace(" ", "")
        if not line or line.startswith("["):  # end of a deb822 stanza / start of a .repo one
            if enabled:
                urls += stanza
            stanza, enabled = [], True
            continue
        if lower in ("enabled:no", "enabled=0"):
            enabled = False
        elif line.startswith(("deb ", "deb-src ")) or lower.startswith(
                ("uris:", "baseurl=", "mirrorlist=", "metalink=")):
            stanza += _URL.findall(line)
    return tuple(dict.fromkeys(urls))


def parse_facts(stdout: str) -> PackageFacts:
    sections = split_sections(stdout)
    managers = sections.get("managers", "").split()
    proxy = None
    for line in sections.get("proxy", "").splitlines():  # Acquire::http::Proxy "URL";
        value = line.split('"')[1] if line.count('"') >= 2 else ""
        if value.startswith(("http://", "https://")):
            proxy = value
            break
    return PackageFacts(
        manager=managers[0] if managers else None,
        os_id=sections.get("os_id", "").strip(),
        sources=source_urls(sections.get("sources", "")),
        proxy=proxy,
    )


def probe_targets(facts: PackageFacts) -> tuple[EgressTarget, ...]:
    """Where a download would go first: the apt proxy when one is set, else every remote
    mirror (host and port of its URL)."""
    urls = [facts.proxy] if facts.proxy else [
        u for u in facts.sources if not u.startswith(("file:", "cdrom:"))]
    targets: list[EgressTarget] = []
    for url in urls:
        parts = urlsplit(url.split("+", 1)[-1] if url.startswith(("mirror+", "tor+")) else url)
        if not parts.hostname:
            continue
        port = parts.port or {"https": 443, "ftp": 21}.get(parts.scheme, 80)
        target = EgressTarget(parts.hostname, port)
        if target not in targets:
            targets.append(target)
    return tuple(targets)


def install_command(manager: str, package: str = NFTABLES) -> str:
    """Install ``package`` non-interactively (run with sudo). apt-get refreshes its lists
    and tries again when the first attempt fails: a fresh cloud image often has none."""
    if manager == "apt-get":
        install = (f"DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="
                   f"{LOCK_TIMEOUT} install -y --no-install-recommends {package}")
        return (f"{install} || {{ apt-get -o DPkg::Lock::Timeout={LOCK_TIMEOUT} -q update "
                f"&& {install}; }}")
    if manager == "dnf":
        return f"dnf install -y {package}"
    raise ValueError(f"no install command for package manager {manager!r}")


@dataclass(frozen=True)
class InstallPlan:
    package: str
    manager: str
    command: str
    source: str  # where it comes from, for the diff: "local source", "deb.debian.org:80"

    def diff(self) -> str:
        return (f"--- live: packages\n+++ wanted: packages\n@@ -0,0 +1 @@\n"
                f"+{self.package} (from {self.source}: {self.manager} install "
                f"{self.package})\n")


def plan_install(host: str, facts: PackageFacts, reached: Sequence[tuple[EgressTarget, str]],
                 package: str = NFTABLES, why: str = "nft is not installed") -> InstallPlan:
    """The install to run, or StepError (before any change) saying why it cannot work and
    what to do instead. ``reached``: each probe target with "" when it answered, else the
    error."""
    if facts.manager is None:
        raise StepError(f"{host}: {why} on the bastion and it has no package manager "
                        f"kubebastion can use (apt-get, dnf; os {facts.os_id or 'unknown'}): "
                        f"install {package} on the bastion and rerun")
    command = install_command(facts.manager, package)
    if facts.local_source:
        return InstallPlan(package, facts.manager, command, "a local package source")
    answered = [str(target) for target, error in reached if not error]
    if answered:
        return InstallPlan(package, facts.manager, command, answered[0])
    tried = ", ".join(f"{t} ({e})" for t, e in reached) or "no package source configured"
    via = "its apt proxy" if facts.proxy else "its package mirrors"
    copied = f"./{package}_*.deb" if facts.manager == "apt-get" else f"./{package}-*.rpm"
    raise StepError(f"{host}: {why} on the bastion, and the bastion is offline: it cannot "
                    f"reach {via}: {tried}. Install {package} on the bastion from your "
                    f"offline mirror or a copied package (e.g. `{facts.manager} install "
                    f"{copied}`), then rerun")
