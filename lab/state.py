"""What a running lab looks like, as recorded in ``state_dir/lab.json``.

``LabState`` is the value ``up`` returns and the thing tests and the invoke tasks use:
paths to the generated Nornir config, inventory, key and known_hosts, plus per-host
facts (namespace, addresses, sshd pid, host key fingerprint). lab.json is written last
during a build, so its presence means "this lab was fully built"; a crash before that
leaves no lab.json and the next ``up`` rebuilds.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from lab.topology import Role, Topology, operator_network_of

STATE_VERSION = 1
#: Lab hosts bind-mount their own copies over these: a state dir below one of them would
#: be hidden from the hosts' sshds (a checkout under /tmp or /root, for instance).
HIDDEN_IN_HOSTS = ("/home", "/root", "/tmp")  # noqa: S108 - paths compared, not used


def _default_state_dir() -> Path:
    """``lab/state`` in the checkout, or /var/lib/kubebastion-lab when the checkout sits
    where lab hosts cannot see it."""
    in_checkout = Path(__file__).resolve().parent / "state"
    if any(in_checkout.is_relative_to(p) for p in HIDDEN_IN_HOSTS):
        return Path("/var/lib/kubebastion-lab/state")
    return in_checkout


DEFAULT_STATE_DIR = _default_state_dir()


class _InFolder:
    """A file or folder at a fixed name in one of the state's folders (``state_dir``, a
    host's ``host_dir``): derived, never stored, so it cannot disagree with the folder."""

    def __init__(self, folder: str, name: str) -> None:
        self.folder = folder
        self.name = name

    def __get__(self, state: object, owner: type | None = None) -> Path:
        return Path(getattr(state, self.folder)) / self.name


@dataclass
class HostState:
    """One SSH host: where it lives, how to reach it, which sshd serves it."""

    name: str
    role: Role
    namespace: str
    addresses: list[str]
    ssh_address: str
    private_address: str
    ssh_port: int
    sshd_pid: int
    host_dir: Path
    host_key_fingerprint: str

    #: sshd's log (LogLevel VERBOSE): count "Accepted publickey" lines to count logins.
    sshd_log = _InFolder("host_dir", "sshd.log")
    sshd_config = _InFolder("host_dir", "sshd_config")
    host_key = _InFolder("host_dir", "ssh_host_ed25519_key")


@dataclass
class InetServiceState:
    """The emulated internet host's HTTP service (answers with the caller's address)."""

    namespace: str
    address: str
    port: int
    pid: int


@dataclass
class LabState:
    """A built lab. Paths are absolute; hosts are in inventory order (bastion first)."""

    prefix: str
    user: str
    control_planes: int
    workers: int
    sudo_password_required: bool
    state_dir: Path
    operator_iface: str
    operator_address: str
    hosts: list[HostState]
    inet: InetServiceState
    created_paths: list[str] = field(default_factory=list)
    version: int = STATE_VERSION
    single_nic: bool = False  # see lab.topology.Topology

    nornir_config = _InFolder("state_dir", "nornir_config.yaml")
    inventory_dir = _InFolder("state_dir", "inventory")
    known_hosts = _InFolder("state_dir", "known_hosts")
    private_key = _InFolder("state_dir", "id_ed25519")
    public_key = _InFolder("state_dir", "id_ed25519.pub")
    #: OpenSSH client config with Host aliases (bastion, k8s-m0, ...), ProxyJump for nodes.
    ssh_config = _InFolder("state_dir", "ssh_config")
    lab_json = _InFolder("state_dir", "lab.json")
    nornir_log = _InFolder("state_dir", "nornir.log")

    @property
    def operator_network(self) -> str:
        """The operator<->bastion /30 (``operator_address`` is its first host address)."""
        return operator_network_of(self.operator_address)

    @property
    def topology(self) -> Topology:
        return Topology(self.prefix, self.control_planes, self.workers, self.operator_network,
                        self.single_nic)

    @property
    def bastion(self) -> HostState:
        return self.host("bastion")

    @property
    def nodes(self) -> list[HostState]:
        return [h for h in self.hosts if h.role != "bastion"]

    def host(self, name: str) -> HostState:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no lab host {name!r}; hosts: {[h.name for h in self.hosts]}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["operator_network"] = self.operator_network  # derived; for readers of lab.json
        for h in data["hosts"]:
            h["host_dir"] = str(h["host_dir"])
        data["paths"] = {
            "nornir_config": str(self.nornir_config),
            "inventory_dir": str(self.inventory_dir),
            "known_hosts": str(self.known_hosts),
            "private_key": str(self.private_key),
            "ssh_config": str(self.ssh_config),
        }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        hosts = [HostState(**{**h, "host_dir": Path(h["host_dir"])}) for h in data["hosts"]]
        return cls(
            prefix=data["prefix"],
            user=data["user"],
            control_planes=int(data["control_planes"]),
            workers=int(data["workers"]),
            sudo_password_required=bool(data["sudo_password_required"]),
            state_dir=Path(data["state_dir"]),
            operator_iface=data["operator_iface"],
            operator_address=data["operator_address"],
            hosts=hosts,
            inet=InetServiceState(**data["inet"]),
            created_paths=list(data.get("created_paths", [])),
            version=int(data.get("version", STATE_VERSION)),
            single_nic=bool(data.get("single_nic", False)),
        )

    def save(self) -> bool:
        """Write lab.json atomically if its content changed; returns whether it wrote."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
        return write_if_changed(self.lab_json, text)


def load_state(state_dir: Path = DEFAULT_STATE_DIR) -> LabState | None:
    """The lab recorded in ``state_dir`` (None when there is none or it is unreadable)."""
    path = Path(state_dir).resolve() / "lab.json"
    try:
        data = json.loads(path.read_text())
        if int(data.get("version", 0)) != STATE_VERSION:
            return None
        return LabState.from_json(cast(dict[str, Any], data))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Atomic write that leaves the file (and its mtime) alone when nothing changed."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True
