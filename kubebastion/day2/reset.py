"""``invoke reset``: the confirmation, and what kubebastion forgets on the bastion after
kubespray's ``reset.yml`` (pure: paths and commands, no I/O).

kubespray asks "Type 'yes' to reset your cluster"; a typo-proof question is the cluster's
own name (as cloud consoles ask before deleting), so a reset of the wrong inventory cannot
be confirmed by habit. Kept after a reset: the NAT (the nodes may still need it), the
kubespray checkout and venv (a new deploy reuses them), the bastion's SSH key (it may be
the user's own). ``--all`` removes the checkout and the venv too (NAT: ``invoke nat
--remove``'s own path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubebastion.cluster import Cluster
from kubebastion.errors import ConfigError
from kubebastion.kubespray import applied
from kubebastion.kubespray.inventory import inventory_dir
from kubebastion.kubespray.layout import RemoteLayout
from kubebastion.ssh.remote import quote


def check_confirmation(cluster: Cluster, typed: str | None) -> None:
    """Go on only when the user typed (or gave ``--yes-destroy``) this cluster's name."""
    if typed is None or typed.strip() == "":
        raise ConfigError(f"reset not confirmed: type the cluster name {cluster.name!r} "
                          f"or pass --yes-destroy {cluster.name}; nothing was changed")
    if typed.strip() != cluster.name:
        raise ConfigError(f"reset not confirmed: {typed.strip()!r} is not the cluster name "
                          f"{cluster.name!r}; nothing was changed")


def prompt_text(cluster: Cluster) -> str:
    nodes = ", ".join(n.name for n in cluster.nodes)
    return (f"This resets cluster {cluster.name!r} ({nodes}) with kubespray's reset.yml: "
            "Kubernetes and etcd are wiped from every node.\n"
            f"Type the cluster name ({cluster.name}) to go on: ")


def state_paths(layout: RemoteLayout, cluster: Cluster, everything: bool) -> list[str]:
    """What kubebastion recorded for this cluster on the bastion: the last run's record,
    the rendered inventory and the nodes' host keys for ansible; ``everything``: also the
    kubespray checkout and its venv."""
    paths = [applied.record_path(layout.logs, cluster.name),
             inventory_dir(layout.checkout, cluster.name), layout.known_hosts]
    if everything:
        paths += [layout.checkout, layout.venv]
    return paths


def forget_command(paths: list[str], dry_run: bool) -> str:
    """Prints ``gone <path>`` for each that existed (and is removed unless ``dry_run``)."""
    lines = []
    for path in paths:
        p = quote(path)
        action = "" if dry_run else f" && rm -rf -- {p}"
        lines.append(f"if [ -e {p} ] || [ -L {p} ]; then echo gone {p}{action}; fi")
    return "\n".join(lines)


def parse_forgotten(stdout: str) -> list[str]:
    return [line[len("gone "):] for line in stdout.splitlines() if line.startswith("gone ")]


@dataclass(frozen=True)
class Forgotten:
    paths: tuple[str, ...]

    @property
    def summary(self) -> str:
        return "nothing recorded for this cluster on the bastion" if not self.paths else (
            f"removed {', '.join(self.paths)}")

    def as_dict(self) -> dict[str, Any]:
        return {"paths": list(self.paths), "summary": self.summary}
