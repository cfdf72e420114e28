"""``up``, ``down`` and ``status`` of the built-in lab.

``up`` is idempotent and self-healing: with the same parameters it only checks (and
repairs what is broken: a dead sshd, a dead inet service, a link left down, drifted
files); with other sizes, another user, or a half-built lab (no lab.json, a namespace
missing) it tears down and rebuilds. ``down`` removes everything the lab made and is
safe to run any number of times.

Several labs can be up at once, one per name prefix (each in its own state_dir, with its
own login user): each gets its own operator /30 in 198.18.0.0/24, recorded in lab.json and
kept on repair, and ``up``/``down`` of one prefix never touch another prefix's lab.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from lab import accounts, hosts, keys, network
from lab.files import (
    defaults_yaml,
    groups_yaml,
    hosts_yaml,
    known_hosts_text,
    nornir_config_yaml,
    ssh_config_text,
)
from lab.lock import MACHINE_LOCK, held, operation_lock
from lab.netns import (
    kill_namespace_processes,
    list_namespaces,
    namespace_exists,
    run,
)
from lab.state import (
    DEFAULT_STATE_DIR,
    HostState,
    LabState,
    load_state,
    write_if_changed,
)
from lab.topology import (
    OPERATOR_SPACE,
    LabError,
    Topology,
    choose_operator_network,
    hosts_file,
    namespace_pattern,
    validate_prefix,
    validate_user,
)

log = logging.getLogger("lab")

REQUIRED_TOOLS = (
    "/usr/sbin/sshd",
    hosts.SFTP_SERVER,
    network.SYSTEM_PYTHON,
)
REQUIRED_COMMANDS = (
    "ip",
    "unshare",
    "nsenter",
    "useradd",
    "userdel",
    "usermod",
    "chpasswd",
    "visudo",
    "mount",
    "nft",
)
# Files and directories under state_dir that belong to the lab (removed by ``down``).
# nornir.log is left alone: it is written by kubebastion runs, not by the lab.
STATE_ENTRIES = (
    "hosts",
    "inventory",
    "inet",
    "nornir_config.yaml",
    "known_hosts",
    "ssh_config",
    "lab.json",
    "id_ed25519",
    "id_ed25519.pub",
)


def preflight() -> list[str]:
    """What stops a lab from being built here (empty list: good to go)."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (network namespaces, useradd, sshd)")
    for path in REQUIRED_TOOLS:
        if not os.access(path, os.X_OK):
            problems.append(f"missing {path} (apt-get install openssh-server python3)")
    for cmd in REQUIRED_COMMANDS:
        if shutil.which(cmd) is None:
            problems.append(f"missing command {cmd!r} (iproute2/util-linux/sudo/passwd/nftables)")
    if not os.path.isdir(accounts.SUDOERS_DIR):
        problems.append(f"missing {accounts.SUDOERS_DIR} (apt-get install sudo)")
    return problems


def netns_usable() -> str | None:
    """None if this process can create network namespaces, else why not.

    Probes with an anonymous ``unshare --net`` so nothing named is left behind.
    """
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "iproute2/util-linux missing"
    proc = run(["unshare", "--net", "--", "ip", "link", "show", "lo"], check=False, timeout=10)
    if proc.returncode != 0:
        return f"cannot create a network namespace: {proc.stderr.strip()}"
    return None


def config_beside(state: LabState, folder: Path) -> Path:
    """A nornir_config.yaml in ``folder`` for inventory files the caller wrote into
    ``folder/inventory/``: the lab's runner, and a nornir.log of its own. Returns it."""
    config = yaml.safe_load(state.nornir_config.read_text())
    config["inventory"]["options"] = {
        "host_file": "inventory/hosts.yaml", "group_file": "inventory/groups.yaml",
        "defaults_file": "inventory/defaults.yaml"}
    config["logging"] = {"log_file": "nornir.log"}
    path = folder / "nornir_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def unavailable_reason() -> str | None:
    """Why a lab cannot be built on this machine, in one line (None: it can)."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, sshd, useradd); run as root"
    why = netns_usable()
    if why:
        return f"the lab needs network namespaces: {why}"
    problems = preflight()
    if problems:
        return "lab prerequisites missing: " + "; ".join(problems)
    return None


def _resolve_state_dir(state_dir: Path | str) -> Path:
    resolved = Path(state_dir).resolve()
    why = hosts.forbidden_state_dir(resolved)
    if why:
        raise LabError(why)
    return resolved


# --- client-side files ------------------------------------------------------------------


def write_client_files(state: LabState) -> bool:
    """(Re)write inventory, nornir_config.yaml, known_hosts and ssh_config; return if any changed.

    known_hosts is always derived from the host keys on disk, so an ``up`` after
    :func:`replace_host_key` re-trusts the host.
    """
    topo = state.topology
    pubkeys = {h.name: keys.read_public(h.host_key) for h in state.hosts}
    sd = state.state_dir
    inv = state.inventory_dir
    changes = [
        write_if_changed(inv / "hosts.yaml", hosts_yaml(topo)),
        write_if_changed(inv / "groups.yaml", groups_yaml()),
        write_if_changed(inv / "defaults.yaml", defaults_yaml(state.user, sd)),
        write_if_changed(state.nornir_config, nornir_config_yaml(topo, sd)),
        write_if_changed(state.known_hosts, known_hosts_text(topo, pubkeys)),
        write_if_changed(state.ssh_config, ssh_config_text(topo, state.user, sd)),
    ]
    for h in state.hosts:
        h.host_key_fingerprint = keys.fingerprint(pubkeys[h.name])
    return any(changes)


def replace_host_key(state: LabState, name: str, *, update_known_hosts: bool = False) -> HostState:
    """Give a host a brand-new host key and restart its sshd.

    With ``update_known_hosts=False`` (default) the lab's known_hosts still holds the old
    key, so a strict client must now refuse the host ("changed host key" tests). Call
    again with ``update_known_hosts=True``, or run ``lab.up`` (which re-syncs
    known_hosts), to make the host trusted again.
    """
    host = state.host(name)
    keys.generate_keypair(host.host_key, f"root@{name}")
    host = hosts.restart_sshd(state, name)
    if update_known_hosts:
        write_client_files(state)
    return host


# --- up ---------------------------------------------------------------------------------


def up(
    name_prefix: str = "kbl",
    control_planes: int = 1,
    workers: int = 3,
    user: str = "kblab",
    sudo_password: str | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
    single_nic: bool = False,
) -> LabState:
    """Bring the lab up (or leave a healthy one as it is) and return its state.

    ``sudo_password=None`` gives passwordless sudo; a string makes sudo ask for it (the
    lab user's real password). Labs with other prefixes may be up at the same time: give
    each its own ``state_dir`` and ``user`` (both are refused when another live lab uses
    them). The bastion's operator-side address is ``state.bastion.ssh_address``:
    198.18.0.2 for the default prefix when free, another /30's .2 otherwise.

    ``single_nic=True`` gives the bastion one NIC, on the private network, through which
    it also reaches the emulated internet (a cloud bastion with a 1:1 NAT public address);
    see :attr:`lab.topology.Topology.single_nic`.
    """
    validate_prefix(name_prefix)
    with held(operation_lock(name_prefix)):
        return _up(name_prefix, control_planes, workers, user, sudo_password, state_dir,
                   single_nic)


def _up(
    name_prefix: str,
    control_planes: int,
    workers: int,
    user: str,
    sudo_password: str | None,
    state_dir: Path,
    single_nic: bool = False,
) -> LabState:
    started = time.monotonic()
    problems = preflight()
    if problems:
        raise LabError("cannot build the lab here: " + "; ".join(problems))
    topology = Topology(name_prefix, control_planes, workers, single_nic=single_nic)
    validate_user(user)
    accounts.validate_sudo_password(sudo_password)
    sd = _resolve_state_dir(state_dir)
    sd.mkdir(parents=True, exist_ok=True)

    existing = load_state(sd)
    if existing is not None and existing.prefix != name_prefix and _is_live(existing):
        raise LabError(
            f"{sd} holds the running lab {existing.prefix!r}: give lab {name_prefix!r} a "
            f"state_dir of its own, or take {existing.prefix!r} down first"
        )
    other = _labs_using_user(user, exclude={name_prefix})
    if other:
        raise LabError(
            f"lab user {user!r} already serves the running lab(s) {', '.join(other)}: give "
            f"lab {name_prefix!r} a user of its own (e.g. {name_prefix + 'lab'!r})"
        )
    if existing is not None and (
        existing.prefix,
        existing.control_planes,
        existing.workers,
        existing.user,
        existing.single_nic,
    ) == (name_prefix, control_planes, workers, user, single_nic):
        repaired = _check_and_repair(existing, sudo_password)
        if repaired is not None:
            log.info("lab %s up (checked) in %.2fs", name_prefix, time.monotonic() - started)
            return repaired
        log.info("lab %s is damaged beyond repair: rebuilding", name_prefix)
    ours = {topology.operator_iface} | ({existing.operator_iface} if existing else set())
    preferred = existing.operator_network if existing else None
    _operator_network(name_prefix, preferred, ours)  # refuse before tearing anything down
    if existing is not None:
        _down(existing.prefix, existing.user, sd)
    _down(name_prefix, user, sd)  # leftovers of a crashed or half-built lab
    state = _build(topology, user, sudo_password, sd, preferred)
    log.info("lab %s built in %.2fs", name_prefix, time.monotonic() - started)
    return state


def _operator_network(prefix: str, preferred: str | None, ours: set[str]) -> str:
    """A /30 of 198.18.0.0/24 no root-namespace interface (but ours) uses; see
    :func:`lab.topology.operator_network_candidates` for the order."""
    taken = [(i, n) for i, n in network.root_ipv4_networks() if i not in ours]
    chosen = choose_operator_network(prefix, [n for _, n in taken], preferred)
    if chosen is None:
        users = sorted({i for i, n in taken if n.overlaps(OPERATOR_SPACE)})
        raise LabError(
            f"no free /30 left in {OPERATOR_SPACE} for the operator link (used by "
            f"{', '.join(users)}): take another lab down first"
        )
    return chosen


def _build(
    topology: Topology,
    user: str,
    sudo_password: str | None,
    sd: Path,
    preferred_network: str | None = None,
) -> LabState:
    # Links first: the chosen /30 is only ours once the root link carries it, and every
    # file below (sshd_config, inventory, known_hosts) uses the bastion's address on it.
    with held(MACHINE_LOCK):
        chosen = _operator_network(topology.prefix, preferred_network, {topology.operator_iface})
        topology = dataclasses.replace(topology, operator_network=chosen)
        network.build(topology)
        created = hosts.ensure_mount_points()
        uid, gid, _ = accounts.ensure_user(user)
        accounts.set_password(user, sudo_password)
        accounts.ensure_sudoers(user, sudo_password is not None)
    operator_pub = _operator_key(sd, topology.prefix)
    hosts_text = hosts_file(topology)
    pubkeys: dict[str, str] = {}
    for plan in topology.hosts:
        files = hosts.prepare_host_dir(sd, plan, user, uid, gid, operator_pub, hosts_text)
        pubkeys[plan.name] = files.public_key

    inet = network.start_inet_service(topology, sd)
    procs = {p.name: hosts.spawn_sshd(p, hosts.host_dir(sd, p.name)) for p in topology.hosts}
    host_states: list[HostState] = []
    for plan in topology.hosts:
        hdir = hosts.host_dir(sd, plan.name)
        pid = hosts.wait_sshd(plan, hdir, procs[plan.name])
        host_states.append(
            HostState(
                name=plan.name,
                role=plan.role,
                namespace=plan.namespace,
                addresses=list(plan.addresses),
                ssh_address=plan.ssh_address,
                private_address=plan.private_address,
                ssh_port=22,
                sshd_pid=pid,
                host_dir=hdir,
                host_key_fingerprint=keys.fingerprint(pubkeys[plan.name]),
            )
        )
    state = LabState(
        prefix=topology.prefix,
        user=user,
        control_planes=topology.control_planes,
        workers=topology.workers,
        sudo_password_required=sudo_password is not None,
        state_dir=sd,
        operator_iface=topology.operator_iface,
        operator_address=topology.operator_address,
        hosts=host_states,
        inet=inet,
        created_paths=created,
        single_nic=topology.single_nic,
    )
    write_client_files(state)
    state.save()  # last: lab.json means "fully built"
    return state


def _operator_key(sd: Path, prefix: str) -> str:
    """The operator's key pair (state_dir/id_ed25519), authorized on every lab host."""
    return keys.ensure_keypair(sd / "id_ed25519", f"kubebastion-lab-operator@{prefix}")


def _check_and_repair(state: LabState, sudo_password: str | None) -> LabState | None:
    """Fix what can be fixed in place; None when the lab must be rebuilt."""
    topo = state.topology
    if any(not namespace_exists(ns) for ns in topo.namespaces):
        return None
    if not network.root_link_ok(topo):
        return None
    with held(MACHINE_LOCK):
        state.created_paths += hosts.ensure_mount_points()
        uid, gid, _ = accounts.ensure_user(state.user)
        accounts.set_password(state.user, sudo_password)
        accounts.ensure_sudoers(state.user, sudo_password is not None)
    state.sudo_password_required = sudo_password is not None

    operator_pub = _operator_key(state.state_dir, state.prefix)
    hosts_text = hosts_file(topo)
    restart: list[str] = []
    for plan in topo.hosts:
        files = hosts.prepare_host_dir(
            state.state_dir, plan, state.user, uid, gid, operator_pub, hosts_text
        )
        stale = files.sshd_config_changed or files.host_key_created
        host = state.host(plan.name)
        if (not hosts.adopt_running_sshd(host) or stale
                or hosts.mounts_missing(host, plan)):
            restart.append(plan.name)

    down_links = network.bastion_links_down(topo)
    for entry in down_links:
        ns, ifname = entry.split(":", 1)
        log.info("repair: bringing %s up in %s", ifname, ns)
        run(["ip", "-n", ns, "link", "set", "dev", ifname, "up"])

    if not network.adopt_inet_service(state.inet, state.state_dir):
        log.info("repair: restarting the inet service")
        network.stop_inet_service(state.inet)
        state.inet = network.start_inet_service(topo, state.state_dir)

    plans = {p.name: p for p in topo.hosts}
    for name in restart:
        log.info("repair: restarting sshd of %s", name)
        hosts.stop_sshd(state.host(name))
    procs = {n: hosts.spawn_sshd(plans[n], state.host(n).host_dir) for n in restart}
    for name, proc in procs.items():
        state.host(name).sshd_pid = hosts.wait_sshd(plans[name], state.host(name).host_dir, proc)

    write_client_files(state)
    state.save()
    return state


# --- down -------------------------------------------------------------------------------


def down(
    name_prefix: str = "kbl",
    user: str | None = "kblab",
    state_dir: Path = DEFAULT_STATE_DIR,
) -> dict[str, Any]:
    """Remove the lab: its processes, namespaces, root veth, user, sudoers entry, state files.

    Works from lab.json when there is one and, in any case, also sweeps whatever a
    crashed run may have left under ``name_prefix`` (namespaces matched by exact
    pattern, the ``<prefix>-op`` link). Kills only processes inside the lab's own
    namespaces. Returns a summary of what it removed.
    """
    validate_prefix(name_prefix)
    with held(operation_lock(name_prefix)):
        return _down(name_prefix, user, state_dir)


def _down(name_prefix: str, user: str | None, state_dir: Path) -> dict[str, Any]:
    validate_prefix(name_prefix)
    sd = _resolve_state_dir(state_dir)
    existing = load_state(sd)
    if existing is not None and existing.prefix != name_prefix and _is_live(existing):
        # Another prefix's running lab lives in this state_dir: not ours to remove. Sweep
        # only what ``name_prefix`` may have left behind, and leave the files alone.
        log.info("down %s: leaving lab %s in %s alone", name_prefix, existing.prefix, sd)
        return _sweep(name_prefix, {user} if user else set(), None, sd, remove_files=False)
    users = ({user} if user else set()) | ({existing.user} if existing else set())
    return _sweep(name_prefix, users, existing, sd, remove_files=True)


def _sweep(
    name_prefix: str,
    users: set[str],
    existing: LabState | None,
    sd: Path,
    *,
    remove_files: bool,
) -> dict[str, Any]:
    prefixes = {name_prefix} | ({existing.prefix} if existing else set())

    namespaces: list[str] = []
    present = list_namespaces()
    for prefix in sorted(prefixes):
        pat = namespace_pattern(prefix)
        namespaces += [ns for ns in present if pat.match(ns)]
    if existing is not None:
        namespaces += [ns for ns in existing.topology.namespaces if ns in present]
    namespaces = sorted(set(namespaces))

    killed = kill_namespace_processes(namespaces)
    for prefix in sorted(prefixes):
        network.teardown(prefix, [ns for ns in namespaces if ns.startswith(prefix + "-")])

    users_removed: list[str] = []
    dirs_removed: list[str] = []
    with held(MACHINE_LOCK):
        for u in sorted(users):
            # Lab hosts share /etc/passwd: a user another running lab logs in with stays.
            other = _labs_using_user(u, exclude=prefixes)
            if other:
                log.info("down %s: keeping user %s (used by %s)", name_prefix, u, other)
            elif accounts.remove_user(u):
                users_removed.append(u)
        # /run/sshd and the mount points are shared by every lab on the machine: another
        # lab's sshd needs /run/sshd for each new login, and one being built the rest.
        if existing is not None and not _other_lab_prefixes(exclude=prefixes):
            dirs_removed = [d for d in existing.created_paths if _remove_unused_empty_dir(d)]

    for entry in STATE_ENTRIES if remove_files else ():
        path = sd / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()

    return {
        "namespaces_removed": namespaces,
        "processes_killed": killed,
        "users_removed": users_removed,
        "mount_points_removed": dirs_removed,
        "state_dir": str(sd),
    }


_BASTION_NAMESPACE = re.compile(r"^([a-z][a-z0-9]{0,9})-bastion$")


def _other_lab_prefixes(exclude: set[str]) -> list[str]:
    """Prefixes of the other labs on this machine (their bastion namespace exists).

    Read-only: only looks at /run/netns names.
    """
    found = (_BASTION_NAMESPACE.match(ns) for ns in list_namespaces())
    return sorted({m.group(1) for m in found if m and m.group(1) not in exclude})


def _labs_using_user(user: str, exclude: set[str]) -> list[str]:
    """Other running labs whose bastion sshd lets ``user`` in (they share /etc/passwd,
    so removing or re-passwording the user would break them). Read-only."""
    return [
        p
        for p in _other_lab_prefixes(exclude)
        if user in hosts.sshd_allowed_users_in(f"{p}-bastion")
    ]


def _is_live(state: LabState) -> bool:
    """Whether any namespace of a recorded lab still exists."""
    present = set(list_namespaces())
    return any(ns in present for ns in state.topology.namespaces)


def _remove_unused_empty_dir(path: str) -> bool:
    """rmdir a mount point the lab created, unless it is in use by any mount namespace.

    Another lab-like setup on the machine may still mount over it; removing a directory
    that is a mount point elsewhere would silently detach that mount.
    """
    try:
        if os.listdir(path):
            return False
    except OSError:
        return False
    seen: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            mnt_ns = os.stat(f"/proc/{entry}/ns/mnt").st_ino
            if mnt_ns in seen:
                continue
            seen.add(mnt_ns)
            with open(f"/proc/{entry}/mountinfo") as fh:
                for line in fh:
                    fields = line.split()
                    if len(fields) > 4 and fields[4] == path:
                        return False
        except OSError:
            continue
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


# --- status -----------------------------------------------------------------------------


def status(name_prefix: str = "kbl", state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any]:
    """What is there and whether it is healthy; read-only (no repairs, no root needed
    for most of it). ``healthy`` is True only for a fully working lab."""
    validate_prefix(name_prefix)
    sd = Path(state_dir).resolve()
    state = load_state(sd)
    pat = namespace_pattern(name_prefix)
    present = list_namespaces()
    prefix_ns = [ns for ns in present if pat.match(ns)]
    out: dict[str, Any] = {"prefix": name_prefix, "state_dir": str(sd), "lab_json": False}
    if state is None:
        out.update(
            healthy=False,
            problems=["no lab.json: lab not built (or half-built)"],
            leftover_namespaces=prefix_ns,
        )
        return out
    problems: list[str] = []
    if state.prefix != name_prefix:
        problems.append(f"state_dir holds lab {state.prefix!r}, not {name_prefix!r}")
    topo = state.topology
    hosts_out = []
    for h in state.hosts:
        ns_ok = h.namespace in present
        running = ns_ok and hosts.adopt_running_sshd(h)
        if not ns_ok:
            problems.append(f"namespace {h.namespace} missing")
        elif not running:
            problems.append(f"sshd of {h.name} not running")
        hosts_out.append(
            {
                "name": h.name,
                "role": h.role,
                "namespace": h.namespace,
                "ssh_address": h.ssh_address,
                "addresses": h.addresses,
                "sshd_pid": h.sshd_pid,
                "sshd_running": running,
                "host_key_fingerprint": h.host_key_fingerprint,
            }
        )
    inet_ok = state.inet.namespace in present and network.adopt_inet_service(state.inet, sd)
    if not inet_ok:
        problems.append("inet service not running")
    link_ok = network.root_link_ok(topo)
    if not link_ok:
        problems.append(f"operator link {topo.operator_iface} missing, down or unaddressed")
    try:
        user_ok = accounts.lab_user(state.user) is not None
    except LabError as exc:
        user_ok = False
        problems.append(str(exc))
    if not user_ok:
        problems.append(f"lab user {state.user} missing")
    sudoers_ok = accounts.sudoers_path(state.user).exists()
    if not sudoers_ok:
        problems.append("sudoers entry missing")
    expected = set(topo.namespaces)
    out.update(
        lab_json=True,
        healthy=not problems,
        problems=problems,
        control_planes=state.control_planes,
        workers=state.workers,
        user=state.user,
        user_present=user_ok,
        sudoers_present=sudoers_ok,
        sudo_password_required=state.sudo_password_required,
        operator_link=topo.operator_iface,
        operator_link_ok=link_ok,
        operator_network=topo.operator_network,
        hosts=hosts_out,
        inet={**vars(state.inet), "running": inet_ok},
        leftover_namespaces=[ns for ns in prefix_ns if ns not in expected],
        paths=state.to_json()["paths"],
    )
    return out
