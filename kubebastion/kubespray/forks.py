"""How many hosts ansible works on at once (``forks``), from the run and the bastion.

Neither kubespray's ``ansible.cfg`` nor ansible sets more than 5, so a 30-node cluster
runs every task in 6 rounds; real kubespray's tasks mostly wait on the nodes (downloads,
apt, kubeadm, image pulls), so more at once is most of the speed-up there is. But each
fork is a process of its own on the bastion, a copy of ansible-playbook of tens of MB plus
an ssh client, and bastions are small VMs: the number is the smallest of

- the hosts in the run (more forks than hosts do nothing),
- what the bastion's available memory holds (``FORK_MB`` each, after ``RESERVE_MB`` for
  ansible's main process and the rest of the machine),
- what its cores can drive (``FORKS_PER_CPU`` each: the forks mostly wait on SSH, but the
  main process templates and collects every result on one core),

never below 1. ``forks:`` in the inventory's kubespray settings overrides it. Pure: the
facts come from the preflight's one facts exec (``kubespray.bastion``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: ansible's own default (``DEFAULT_FORKS``), used when the bastion's size is unknown.
ANSIBLE_DEFAULT = 5
#: Memory per fork: a forked ansible-playbook worker while it runs a task (its own pages
#: past what it shares with the main process) and its ssh client.
FORK_MB = 48
#: Memory kept for ansible's main process (kubespray's inventory and vars), the ssh
#: masters and the machine itself.
RESERVE_MB = 384
FORKS_PER_CPU = 16


@dataclass(frozen=True)
class Forks:
    value: int
    reason: str
    hosts: int
    memory_allows: int | None  # None: the bastion's memory is unknown
    cpus_allow: int | None  # None: its cores are unknown
    configured: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_forks(hosts: int, cpus: int, mem_available_mb: int,
                 configured: int | None = None) -> Forks:
    """``forks`` for a run on ``hosts`` hosts from a bastion with ``cpus`` cores and
    ``mem_available_mb`` MB available (0: unknown); ``configured``: the inventory's."""
    memory = max(1, (mem_available_mb - RESERVE_MB) // FORK_MB) if mem_available_mb else None
    cores = cpus * FORKS_PER_CPU if cpus > 0 else None
    sizes = _sizes(cpus, mem_available_mb, cores, memory)
    if configured is not None:
        return Forks(configured, f"set in the inventory (kubespray forks: {configured}); "
                     f"{hosts} hosts, {sizes}", hosts, memory, cores, configured=True)
    if memory is None and cores is None:
        return Forks(ANSIBLE_DEFAULT, f"ansible's default: the bastion's cores and memory "
                     f"are unknown ({hosts} hosts)", hosts, None, None)
    limits = [(max(hosts, 1), f"one per host ({hosts} hosts)")]
    if memory is not None:
        limits.append((memory, f"{mem_available_mb} MB available holds {memory} "
                               f"(at {FORK_MB} MB each, {RESERVE_MB} MB kept)"))
    if cores is not None:
        limits.append((cores, f"{cpus} core{'s' if cpus != 1 else ''} drive {cores} "
                              f"({FORKS_PER_CPU} per core)"))
    value, why = min(limits, key=lambda limit: limit[0])
    others = "; ".join(text for limit, text in limits if text != why)
    return Forks(value, f"{why}; {others}" if others else why, hosts, memory, cores)


def _sizes(cpus: int, mem_available_mb: int, cores: int | None, memory: int | None) -> str:
    parts = []
    if cores is not None:
        parts.append(f"{cpus} cores drive {cores}")
    if memory is not None:
        parts.append(f"{mem_available_mb} MB available holds {memory}")
    return ", ".join(parts) or "the bastion's size unknown"
