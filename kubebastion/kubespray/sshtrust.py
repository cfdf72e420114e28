"""SSH trust from the bastion to the nodes, for ansible: a key the nodes accept, and the
nodes' host keys the bastion checks them against.

- The bastion user's ``~/.ssh/id_ed25519`` is the key (created with ``ssh-keygen -N ''``
  when absent); its public half is appended to each node's ``authorized_keys`` through
  kubebastion's own, verified, node connections, once (matched by key, not by comment).
- The host keys come from the operator's known_hosts: the keys kubebastion itself verified
  when it connected to each node. They go to a file of their own on the bastion,
  ``~/.ssh/kubebastion_known_hosts``, which the playbook's ssh uses with
  ``StrictHostKeyChecking=yes``; nothing is learnt by ``ssh-keyscan`` from the bastion,
  where a man in the middle would be trusted on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import paramiko

from kubebastion.cluster import Node
from kubebastion.errors import StepError
from kubebastion.ssh.remote import quote

KEY_FILE = "~/.ssh/id_ed25519"
KNOWN_HOSTS_FILE = "~/.ssh/kubebastion_known_hosts"


def bastion_key_command(key_path: str, comment: str, create: bool) -> str:
    """Prints ``created``/``exists``/``missing``, ``encrypted`` when the key needs a
    passphrase (ansible runs unattended), then the public key."""
    k = quote(key_path)
    pub = quote(f"{key_path}.pub")
    make = (f"ssh-keygen -q -t ed25519 -N '' -C {quote(comment)} -f {k} >/dev/null; "
            "echo created" if create else "echo missing; exit 0")
    return "\n".join([
        "set -e",
        "umask 077",
        'mkdir -p "$HOME/.ssh"',
        f"if [ -f {k} ]; then echo exists; else {make}; fi",
        f"if ! ssh-keygen -y -P '' -f {k} > /dev/null 2>&1; then echo encrypted; exit 0; fi",
        f"if [ ! -f {pub} ]; then ssh-keygen -y -P '' -f {k} > {pub}; fi",
        f"cat {pub}",
    ])


@dataclass(frozen=True)
class BastionKey:
    state: str  # created, exists, missing (dry run), encrypted
    public_key: str | None

    @property
    def created(self) -> bool:
        return self.state == "created"


def parse_bastion_key(stdout: str) -> BastionKey:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines or lines[0] not in ("created", "exists", "missing"):
        raise StepError(f"unexpected output from the bastion key check: {stdout!r}")
    if "encrypted" in lines[1:2]:
        return BastionKey("encrypted", None)
    public = next((line for line in lines[1:] if line.startswith("ssh-")), None)
    return BastionKey(lines[0], public)


def key_identity(public_key: str) -> str:
    """``<type> <base64>``: what identifies a key in authorized_keys whatever the comment
    or options around it."""
    parts = public_key.split()
    if len(parts) < 2 or not parts[0].startswith("ssh-"):
        raise StepError(f"not an OpenSSH public key: {public_key!r}")
    return f"{parts[0]} {parts[1]}"


def authorize_command(public_key: str, dry_run: bool) -> str:
    """Append the key to the login user's authorized_keys unless it is there; prints
    ``present``, ``added`` or (dry run) ``absent``."""
    identity = quote(key_identity(public_key))
    line = quote(public_key.strip())
    add = ("echo absent" if dry_run else
           'if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f"; fi; '
           f'printf "%s\\n" {line} >> "$f"; echo added')
    return "\n".join([
        "set -e",
        "umask 077",
        'mkdir -p "$HOME/.ssh"',
        'f="$HOME/.ssh/authorized_keys"',
        f'if [ -f "$f" ] && grep -qF -- {identity} "$f"; then echo present; else {add}; fi',
    ])


def known_hosts_entry_name(node: Node) -> str:
    """How OpenSSH (and Paramiko) name the host in known_hosts."""
    return node.address if node.port == 22 else f"[{node.address}]:{node.port}"


def known_hosts_text(nodes: Iterable[Node],
                     operator_keys: Callable[[Node], paramiko.HostKeys]) -> str:
    """The bastion's known_hosts for ansible, from the operator's verified keys; refuses a
    node the operator has no key for (naming it)."""
    lines = ["# Host keys of the cluster nodes, copied by kubebastion from the operator's",
             "# verified known_hosts. Rewritten on every run; ansible checks against it."]
    missing = []
    for node in nodes:
        name = known_hosts_entry_name(node)
        keys = operator_keys(node).lookup(name)
        if not keys:
            missing.append(f"{node.name} ({name})")
            continue
        for key_type in sorted(keys.keys()):
            key = keys[key_type]
            lines.append(f"{name} {key.get_name()} {key.get_base64()}")
    if missing:
        raise StepError("no verified host key in the operator's known_hosts for: "
                        f"{', '.join(missing)}; connect once with host key checking and add "
                        "the verified key (see `invoke check`)")
    return "\n".join(lines) + "\n"
