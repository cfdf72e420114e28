"""``up``, ``down`` and ``status`` of the built-in lab.

``up`` is idempotent and self-healing: with the same parameters it only checks (and
repairs what is broken: a dead sshd, a dead inet service, a link left down, drifted
files); with other sizes, another user, or a half-built lab (no lab.json, a namespace
missing) it tears down and rebuilds. ``down`` removes everything the lab made and is
safe to run any number of times.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from lab import accounts, hosts, keys, network
from lab.files import (
    defaults_yaml,
    groups_yaml,
    hosts_yaml,
    known_hosts_text,
    nornir_config_yaml,
    ssh_config_text,
)
from lab.lock import held
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
    OPERATOR_ADDRESS,
    LabError,
    Topology,
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
    :func:`lab.hosts.replace_host_key` re-trusts the host.
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


# --- up ---------------------------------------------------------------------------------


def up(
    name_prefix: str = "kbl",
    control_planes: int = 1,
    workers: int = 3,
    user: str = "kblab",
    sudo_password: str | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
) -> LabState:
    """Bring the lab up (or leave a healthy one as it is) and return its state.

    ``sudo_password=None`` gives passwordless sudo; a string makes sudo ask for it (the
    lab user's real password). Only one lab can be up on a machine at a time, because
    the operator link address 198.18.0.1 is fixed.
    """
    with held():
        return _up(name_prefix, control_planes, workers, user, sudo_password, state_dir)


def _up(
    name_prefix: str,
    control_planes: int,
    workers: int,
    user: str,
    sudo_password: str | None,
    state_dir: Path,
) -> LabState:
    started = time.monotonic()
    problems = preflight()
    if problems:
        raise LabError("cannot build the lab here: " + "; ".join(problems))
    topology = Topology(name_prefix, control_planes, workers)
    validate_user(user)
    accounts.validate_sudo_password(sudo_password)
    sd = _resolve_state_dir(state_dir)
    sd.mkdir(parents=True, exist_ok=True)

    existing = load_state(sd)
    if existing is not None and (
        existing.prefix,
        existing.control_planes,
        existing.workers,
        existing.user,
    ) == (name_prefix, control_planes, workers, user):
        repaired = _check_and_repair(existing, sudo_password)
        if repaired is not None:
            log.info("lab %s up (checked) in %.2fs", name_prefix, time.monotonic() - started)
            return repaired
        log.info("lab %s is damaged beyond repair: rebuilding", name_prefix)
    ours = {topology.operator_iface} | ({existing.operator_iface} if existing else set())
    holder = network.operator_address_holder()
    if holder is not None and holder not in ours:
        raise LabError(
            f"{OPERATOR_ADDRESS} is already on root-namespace interface {holder!r} (another "
            "lab?). Only one lab can be up at a time: take that one down first"
        )
    if existing is not None:
        _down(existing.prefix, existing.user, sd)
    _down(name_prefix, user, sd)  # leftovers of a crashed or half-built lab
    state = _build(topology, user, sudo_password, sd)
    log.info("lab %s built in %.2fs", name_prefix, time.monotonic() - started)
    return state


def _build(topology: Topology, user: str, sudo_password: str | None, sd: Path) -> LabState:
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

    network.build(topology)
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
        operator_address=OPERATOR_ADDRESS,
        hosts=host_states,
        inet=inet,
        created_paths=created,
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
        if not hosts.adopt_running_sshd(state.host(plan.name)) or stale:
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
    with held():
        return _down(name_prefix, user, state_dir)


def _down(name_prefix: str, user: str | None, state_dir: Path) -> dict[str, Any]:
    validate_prefix(name_prefix)
    sd = _resolve_state_dir(state_dir)
    existing = load_state(sd)
    prefixes = {name_prefix} | ({existing.prefix} if existing else set())
    users = ({user} if user else set()) | ({existing.user} if existing else set())

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

    users_removed = [u for u in sorted(users) if accounts.remove_user(u)]

    for entry in STATE_ENTRIES:
        path = sd / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()

    dirs_removed = []
    for d in existing.created_paths if existing else []:
        if _remove_unused_empty_dir(d):
            dirs_removed.append(d)
    return {
        "namespaces_removed": namespaces,
        "processes_killed": killed,
        "users_removed": users_removed,
        "mount_points_removed": dirs_removed,
        "state_dir": str(sd),
    }


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
        hosts=hosts_out,
        inet={**vars(state.inet), "running": inet_ok},
        leftover_namespaces=[ns for ns in prefix_ns if ns not in expected],
        paths=state.to_json()["paths"],
    )
    return out
