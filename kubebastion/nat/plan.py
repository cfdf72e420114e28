"""NAT on the bastion: the pure parts.

Everything here is data in, data out (templates rendered, commands built, outputs parsed),
so it is unit-tested without a host; ``kubebastion.nat.task`` only runs the commands, and
``kubebastion.egress.diagnose`` reads the same bastion state to diagnose the nodes' egress.

What kubebastion owns on the bastion, and nothing else:

- the nft table ``ip kubebastion_nat`` (one masquerade rule), replaced whole;

A single-NIC bastion (the usual cloud one: one NIC on the private subnet, a 1:1 NAT public
address in front) has the private interface as its uplink. Then the masquerade and the
FORWARD rules also require a destination outside the private network, so traffic between
private hosts that happens to pass through the bastion keeps its source address.
- the iptables chain ``KUBEBASTION-FWD`` and one jump to it from ``FORWARD``, only when
  FORWARD's policy drops (an accept in our own nft chain cannot override a drop in another
  base chain, such as the one ufw or docker leave behind);
- the files in ``MANAGED_FILES`` plus the unit's ``multi-user.target.wants`` symlink.
"""

from __future__ import annotations

import base64
import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kubebastion.cloud import dmi_command, parse_dmi
from kubebastion.cluster import Cluster
from kubebastion.errors import StepError
from kubebastion.ssh.remote import FileWrite, quote
from kubebastion.templating import render

NFT_TABLE = "kubebastion_nat"
FORWARD_CHAIN = "KUBEBASTION-FWD"
MASQUERADE_COMMENT = "kubebastion"
UNIT_NAME = "kubebastion-nat.service"

SYSCTL_DROPIN = "/etc/sysctl.d/60-kubebastion-ip-forward.conf"
NFT_FILE = "/etc/kubebastion/nat.nft"
UP_SCRIPT = "/etc/kubebastion/nat-up.sh"
STATE_FILE = "/etc/kubebastion/nat.state"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}"
WANTS_DIR = "/etc/systemd/system/multi-user.target.wants"
WANTS_LINK = f"{WANTS_DIR}/{UNIT_NAME}"

#: Written in this order; the unit last, so it never points at a missing script.
MANAGED_FILES = (STATE_FILE, SYSCTL_DROPIN, NFT_FILE, UP_SCRIPT, UNIT_FILE)

_INTERFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
#: Starts a section of a state script's output (see split_sections).
MARK = "@@kubebastion "
_MISSING = "<missing>"


# --- what the bastion looks like ----------------------------------------------------------

@dataclass(frozen=True)
class RemoteFile:
    """A managed file as found on the host: its text and mode."""

    content: str
    mode: int


@dataclass(frozen=True)
class BastionState:
    """Everything configure_nat compares against, gathered in one command."""

    ip_forward: int | None
    interfaces: tuple[str, ...]
    addresses: tuple[tuple[str, ipaddress.IPv4Interface], ...]
    default_dev: str | None
    default_via: str | None
    nft_present: bool
    table: str | None  # `nft list table ip kubebastion_nat`, None when absent
    iptables_present: bool
    forward_policy: str | None  # ACCEPT / DROP from `iptables -S FORWARD`
    forward_jump: bool  # FORWARD holds `-j KUBEBASTION-FWD`
    forward_chain: tuple[str, ...] | None  # `iptables -S KUBEBASTION-FWD`, None when absent
    systemd: bool
    wants_link: str | None  # the symlink's target, None when absent
    files: Mapping[str, RemoteFile | None] = field(default_factory=dict)
    dmi: Mapping[str, str] = field(default_factory=dict)  # see kubebastion.cloud
    wants_dir: bool = True  # WANTS_DIR exists (output without the section: assume so)


def state_command(files: Sequence[str] = MANAGED_FILES) -> str:
    """One script (run with sudo: nft needs it) printing marked sections for
    :func:`parse_state`, so reading the bastion costs one round trip."""
    lines = [
        f"mark() {{ printf '\\n{MARK}%s\\n' \"$1\"; }}",
        "mark ip_forward; cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || true",
        "mark links; ip -o link show 2>/dev/null || true",
        "mark addresses; ip -o -4 addr show 2>/dev/null || true",
        "mark default_route; ip -o -4 route show default 2>/dev/null || true",
        "mark nft; if command -v nft >/dev/null 2>&1; then echo present; fi",
        f"mark table; nft list table ip {NFT_TABLE} 2>/dev/null || true",
        "mark iptables; if command -v iptables >/dev/null 2>&1; then echo present; "
        "iptables -S FORWARD 2>/dev/null || true; fi",
        f"mark forward_chain; if command -v iptables >/dev/null 2>&1 && "
        f"iptables -S {FORWARD_CHAIN} >/dev/null 2>&1; then iptables -S {FORWARD_CHAIN}; "
        f"else echo {quote(_MISSING)}; fi",
        "mark systemd; if [ -d /run/systemd/system ]; then echo present; fi",
        f"mark wants_link; readlink {quote(WANTS_LINK)} 2>/dev/null || true",
        f"mark wants_dir; if [ -d {quote(WANTS_DIR)} ]; then echo present; fi",
        f"mark dmi; {dmi_command()}",
    ]
    for path in files:
        p = quote(path)
        lines.append(f"mark {quote('file ' + path)}; if [ -f {p} ]; then stat -c %a {p}; "
                     f"base64 -w0 {p}; echo; else echo {quote(_MISSING)}; fi")
    return "\n".join(lines)


def split_sections(stdout: str) -> dict[str, str]:
    """``@@kubebastion NAME`` lines start sections; the text between is their value."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body).strip("\n") for name, body in sections.items()}


def parse_links(text: str) -> tuple[str, ...]:
    """Interface names from ``ip -o link show`` (``wan0@if12`` is ``wan0``)."""
    names = []
    for line in text.splitlines():
        match = re.match(r"^\d+:\s+([^:@\s]+)(@\S+)?:", line)
        if match:
            names.append(match.group(1))
    return tuple(names)


def parse_addresses(text: str) -> tuple[tuple[str, ipaddress.IPv4Interface], ...]:
    """(interface, address/prefix) pairs from ``ip -o -4 addr show``."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            try:
                found.append((fields[1], ipaddress.IPv4Interface(fields[3])))
            except ValueError:
                continue
    return tuple(found)


def parse_default_route(text: str) -> tuple[str | None, str | None]:
    """(gateway, device) of the first default route in ``ip route show default``."""
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] != "default":
            continue
        via = fields[fields.index("via") + 1] if "via" in fields[:-1] else None
        dev = fields[fields.index("dev") + 1] if "dev" in fields[:-1] else None
        return via, dev
    return None, None


def _parse_file(text: str) -> RemoteFile | None:
    lines = text.strip().splitlines()
    if not lines or lines[0] == _MISSING or len(lines) > 2:
        return None
    mode = int(lines[0], 8)
    data = base64.b64decode(lines[1]) if len(lines) == 2 else b""
    return RemoteFile(data.decode("utf-8", errors="replace"), mode)


def parse_state(stdout: str) -> BastionState:
    sections = split_sections(stdout)
    missing = {"ip_forward", "links", "nft", "table", "iptables"} - sections.keys()
    if missing:
        raise ValueError(f"bastion state output lacks {', '.join(sorted(missing))}")
    forward = sections.get("ip_forward", "").strip()
    iptables_lines = sections["iptables"].splitlines()
    iptables_present = bool(iptables_lines) and iptables_lines[0] == "present"
    rules = [line.strip() for line in iptables_lines[1:]]
    policy = next((r.split()[2] for r in rules if r.startswith("-P FORWARD ")
                   and len(r.split()) == 3), None)
    chain_text = sections.get("forward_chain", _MISSING).strip()
    via, dev = parse_default_route(sections.get("default_route", ""))
    files = {name[len("file "):]: _parse_file(body)
             for name, body in sections.items() if name.startswith("file ")}
    return BastionState(
        ip_forward=int(forward) if forward.isdigit() else None,
        interfaces=parse_links(sections["links"]),
        addresses=parse_addresses(sections.get("addresses", "")),
        default_dev=dev,
        default_via=via,
        nft_present=sections["nft"].strip() == "present",
        table=sections["table"] if sections["table"].strip() else None,
        iptables_present=iptables_present,
        forward_policy=policy,
        forward_jump=f"-A FORWARD -j {FORWARD_CHAIN}" in rules,
        forward_chain=(None if chain_text == _MISSING or not iptables_present
                       else tuple(line.strip() for line in chain_text.splitlines()
                                  if line.strip())),
        systemd=sections.get("systemd", "").strip() == "present",
        wants_link=sections.get("wants_link", "").strip() or None,
        files=files,
        dmi=parse_dmi(sections.get("dmi", "")),
        wants_dir=sections.get("wants_dir", "present").strip() == "present",
    )


def masquerade_rules(listing: str | None, private_cidr: str) -> list[str]:
    """Masquerade rules for ``private_cidr`` in an nft listing (a table or the ruleset)."""
    if not listing:
        return []
    return [line.strip() for line in listing.splitlines()
            if "masquerade" in line.split() and f"ip saddr {private_cidr} " in line]


# --- what it should look like ---------------------------------------------------------------

@dataclass(frozen=True)
class NatPlan:
    """The wanted state: files (path -> text, mode), the nft table, the FORWARD jump."""

    private_cidr: str
    uplink: str
    forward_jump: bool
    ip_forward_before: int
    table: str
    files: Mapping[str, tuple[str, int]]
    single_nic: bool = False  # the uplink carries the private network too

    def as_dict(self) -> dict[str, object]:
        return {"uplink": self.uplink, "private_cidr": self.private_cidr,
                "forward_jump": self.forward_jump, "single_nic": self.single_nic}


def uplink_is_private(uplink: str, state: BastionState,
                      private_cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether the uplink holds an address of the private network: a single-NIC bastion."""
    return any(iface == uplink and address.ip in private_cidr
               for iface, address in state.addresses)


def choose_uplink(bastion: str, wanted: str | None, state: BastionState) -> str:
    """The inventory's uplink, else the default route's interface; refuse anything that
    does not exist. The private interface is a valid answer (a single-NIC bastion)."""
    known = ", ".join(state.interfaces) or "none"
    if wanted is not None:
        if wanted not in state.interfaces:
            raise StepError(f"{bastion}: uplink interface {wanted!r} (data.uplink) does not "
                            f"exist on the bastion; its interfaces: {known}. Fix data.uplink "
                            "in the inventory, or remove it to use the default route's.")
        uplink = wanted
    else:
        if state.default_dev is None:
            raise StepError(f"{bastion}: no default route, so no uplink to masquerade on; "
                            f"set data.uplink on the bastion (interfaces: {known})")
        uplink = state.default_dev
    if not _INTERFACE.match(uplink):
        raise StepError(f"{bastion}: odd uplink interface name {uplink!r}; set data.uplink")
    return uplink


def forward_rules(private_cidr: str, uplink: str, single_nic: bool = False) -> tuple[str, ...]:
    """Our FORWARD chain's rules, as ``iptables -S`` prints them after the chain name.
    Single-NIC, both directions also say "outside the private network" (the interface is
    the same one, so the interface alone cannot tell out from in)."""
    if single_nic:
        return (
            f"-s {private_cidr} ! -d {private_cidr} -o {uplink} -j ACCEPT",
            f"! -s {private_cidr} -d {private_cidr} -i {uplink} -m conntrack --ctstate "
            "RELATED,ESTABLISHED -j ACCEPT",
        )
    return (
        f"-s {private_cidr} -o {uplink} -j ACCEPT",
        f"-d {private_cidr} -i {uplink} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    )


def render_table(private_cidr: str, uplink: str, single_nic: bool = False) -> str:
    return render("nat/table.nft.j2", table=NFT_TABLE, private_cidr=private_cidr,
                  uplink=uplink, comment=MASQUERADE_COMMENT, single_nic=single_nic)


def _recorded(state: BastionState, key: str) -> int | None:
    """A number our state file recorded on our first run (how the bastion was before)."""
    found = state.files.get(STATE_FILE)
    if found is None:
        return None
    for line in found.content.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key and value.strip().isdigit():
            return int(value.strip())
    return None


def recorded_ip_forward(state: BastionState) -> int | None:
    """ip_forward as it was before our first run, from our state file."""
    return _recorded(state, "ip_forward_before")


def recorded_wants_dir_created(state: BastionState) -> bool:
    """Whether our first run created WANTS_DIR (``--remove`` then removes it if empty);
    unknown (a state file older than this record) counts as no."""
    return _recorded(state, "wants_dir_created") == 1


def plan_nat(cluster: Cluster, state: BastionState) -> NatPlan:
    """What the bastion must hold; raises StepError (before any change) on bad input.
    A missing ``nft`` is not bad input: the step installs it (``kubebastion.nat.packages``)."""
    name = cluster.bastion.name
    if cluster.private_cidr.version != 4:
        raise StepError(f"{name}: private_cidr {cluster.private_cidr} is not IPv4; "
                        "kubebastion masquerades IPv4 only")
    cidr = str(cluster.private_cidr)
    uplink = choose_uplink(name, cluster.bastion.uplink, state)
    single_nic = uplink_is_private(uplink, state, cluster.private_cidr)
    # Sticky: once our jump or chain exists we keep managing it, even if FORWARD's policy
    # was switched back (docker, for one, sets DROP again at its next start).
    jump = (state.forward_policy == "DROP" or state.forward_jump
            or state.forward_chain is not None)
    before = recorded_ip_forward(state)
    if before is None:
        before = state.ip_forward if state.ip_forward is not None else 0
    # Sticky as well: recorded when the state file is first written (before enabling).
    wants_dir_created = (recorded_wants_dir_created(state) if STATE_FILE in state.files
                         and state.files[STATE_FILE] is not None else not state.wants_dir)
    common: dict[str, object] = {
        "private_cidr": cidr, "uplink": uplink, "table": NFT_TABLE,
        "comment": MASQUERADE_COMMENT, "up_script": UP_SCRIPT, "unit_name": UNIT_NAME,
        "sysctl_dropin": SYSCTL_DROPIN, "nft_file": NFT_FILE, "forward_jump": jump,
        "forward_chain": FORWARD_CHAIN,
        "forward_rules": forward_rules(cidr, uplink, single_nic),
        "ip_forward_before": before, "single_nic": single_nic,
        "wants_dir_created": int(wants_dir_created),
    }
    files = {
        STATE_FILE: (render("nat/nat.state.j2", **common), 0o644),
        SYSCTL_DROPIN: (render("nat/ip-forward.conf.j2", **common), 0o644),
        NFT_FILE: (render("nat/nat.nft.j2", **common), 0o644),
        UP_SCRIPT: (render("nat/nat-up.sh.j2", **common), 0o755),
        UNIT_FILE: (render("nat/kubebastion-nat.service.j2", **common), 0o644),
    }
    return NatPlan(cidr, uplink, jump, before, render_table(cidr, uplink, single_nic), files,
                   single_nic)


# --- the difference, as a diff ---------------------------------------------------------------

def _listing(text: str | None) -> list[str]:
    """An nft listing's lines without handles or blank lines, indentation kept (for
    people reading the diff)."""
    if not text:
        return []
    lines = (re.sub(r"\s*# handle \d+$", "", line).rstrip() for line in text.splitlines())
    return [line for line in lines if line.strip()]


def _same_listing(a: str | None, b: str | None) -> bool:
    """Whether two listings hold the same statements, whitespace aside: what we rendered
    compares equal to what nft prints back."""
    return [line.strip() for line in _listing(a)] == [line.strip() for line in _listing(b)]


def _unified(old: Sequence[str], new: Sequence[str], old_name: str, new_name: str) -> str:
    lines = list(difflib.unified_diff(list(old), list(new), old_name, new_name, lineterm=""))
    return "\n".join(lines) + "\n" if lines else ""


def file_diff(path: str, current: RemoteFile | None, wanted: tuple[str, int] | None) -> str:
    """A unified diff of one file; a mode change shows as a header line."""
    old = current.content.splitlines() if current else []
    new = wanted[0].splitlines() if wanted else []
    text = _unified(old, new, path if current else "/dev/null",
                    path if wanted else "/dev/null")
    if current and wanted and current.mode != wanted[1]:
        text = f"mode {path}: {current.mode:o} -> {wanted[1]:o}\n" + text
    return text


def rules_diff(state: BastionState, plan: NatPlan | None) -> str:
    """Live forwarding and rules vs wanted (``plan`` None: everything of ours removed)."""
    parts = []
    if plan is not None and state.ip_forward != 1:
        parts.append(_unified([f"net.ipv4.ip_forward = {state.ip_forward}"],
                              ["net.ipv4.ip_forward = 1"], "live: sysctl", "wanted: sysctl"))
    if plan is None and state.ip_forward == 1 and recorded_ip_forward(state) == 0:
        parts.append(_unified(["net.ipv4.ip_forward = 1"], ["net.ipv4.ip_forward = 0"],
                              "live: sysctl", "wanted: sysctl"))
    wanted_table = plan.table if plan else None
    if not _same_listing(state.table, wanted_table):
        parts.append(_unified(_listing(state.table), _listing(wanted_table),
                              f"live: nft table ip {NFT_TABLE}",
                              f"wanted: nft table ip {NFT_TABLE}"))
    live_fwd = _forward_lines(state.forward_jump, state.forward_chain)
    wanted_fwd: list[str] = []
    if plan is not None and plan.forward_jump and state.iptables_present:
        wanted_fwd = _forward_lines(True, (f"-N {FORWARD_CHAIN}", *(
            f"-A {FORWARD_CHAIN} {rule}" for rule in forward_rules(
                plan.private_cidr, plan.uplink, plan.single_nic))))
    if live_fwd != wanted_fwd:
        parts.append(_unified(live_fwd, wanted_fwd, "live: iptables filter",
                              "wanted: iptables filter"))
    return "".join(parts)


def _forward_lines(jump: bool, chain: Iterable[str] | None) -> list[str]:
    lines = [f"-A FORWARD -j {FORWARD_CHAIN}"] if jump else []
    return lines + list(chain or ())


def files_diff(state: BastionState, plan: NatPlan | None) -> str:
    parts = []
    for path in MANAGED_FILES:
        wanted = plan.files.get(path) if plan else None
        current = state.files.get(path)
        if current is None and wanted is None:
            continue
        if current and wanted and current.content == wanted[0] and current.mode == wanted[1]:
            continue
        parts.append(file_diff(path, current, wanted))
    wanted_link = UNIT_FILE if plan else None
    if state.wants_link != wanted_link:
        parts.append(_unified([f"{WANTS_LINK} -> {state.wants_link}"] if state.wants_link
                              else [], [f"{WANTS_LINK} -> {wanted_link}"] if wanted_link
                              else [], "live: symlink", "wanted: symlink"))
    return "".join(parts)


# --- commands that change the bastion --------------------------------------------------------

#: Every file we render says so on one of its first lines; a file at one of our paths
#: without it is someone else's, and is backed up before we replace it.
OURS_MARK = "Managed by kubebastion"


def file_writes(state: BastionState, plan: NatPlan) -> tuple[FileWrite, ...]:
    """The managed files that differ from the plan (content or mode), in
    ``MANAGED_FILES`` order, for one batched write; a file not ours gets a backup."""
    writes = []
    for path in MANAGED_FILES:
        text, mode = plan.files[path]
        current = state.files.get(path)
        if current is not None and current.content == text and current.mode == mode:
            continue
        foreign = current is not None and OURS_MARK not in current.content
        writes.append(FileWrite(path, text.encode(), mode, backup=foreign))
    return tuple(writes)


def needs_enable(state: BastionState, plan: NatPlan) -> bool:
    """Whether the unit must be (re-)enabled: no symlink yet, or a new unit file."""
    current = state.files.get(UNIT_FILE)
    return (state.wants_link != UNIT_FILE or current is None
            or current.content != plan.files[UNIT_FILE][0])


def change_script(state: BastionState, plan: NatPlan) -> str:
    """What runs after the files are installed, in the same script: enable the unit if
    needed, then apply the rules (if they differ) with the script boot runs."""
    steps = [enable_command()] if needs_enable(state, plan) else []
    if rules_diff(state, plan):
        steps.append(apply_command())
    return "\n".join(steps)


def enable_command() -> str:
    """Enable the unit the way ``systemctl enable`` would (the symlink), idempotently."""
    wants = WANTS_LINK.rsplit("/", 1)[0]
    return (f"mkdir -p {quote(wants)} && ln -sfn {quote(UNIT_FILE)} {quote(WANTS_LINK)} && "
            "if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi")


def apply_command() -> str:
    """Apply now exactly what boot applies: the unit's script."""
    return f"/bin/sh {quote(UP_SCRIPT)}"


def remove_command(state: BastionState) -> str:
    """Undo exactly what configure_nat added; never touches other tables or chains."""
    steps = ["set -e"]
    if state.table is not None:
        steps.append(f"nft delete table ip {NFT_TABLE}")
    if state.iptables_present:
        steps.append(f"while iptables -C FORWARD -j {FORWARD_CHAIN} 2>/dev/null; do "
                     f"iptables -D FORWARD -j {FORWARD_CHAIN}; done")
        if state.forward_chain is not None:
            steps += [f"iptables -F {FORWARD_CHAIN}", f"iptables -X {FORWARD_CHAIN}"]
    if state.ip_forward == 1 and recorded_ip_forward(state) == 0:
        steps.append("sysctl -q -w net.ipv4.ip_forward=0")
    paths = [WANTS_LINK, *reversed(MANAGED_FILES)]
    steps.append("rm -f " + " ".join(quote(p) for p in paths))
    # Folders: ours by name, or WANTS_DIR when our first run made it; only if empty.
    folders = [STATE_FILE.rsplit("/", 1)[0]]
    if recorded_wants_dir_created(state):
        folders.append(WANTS_DIR)
    steps += [f"rmdir {quote(f)} 2>/dev/null || true" for f in folders]
    if state.systemd:
        steps.append("systemctl daemon-reload")
    return "\n".join(steps)
