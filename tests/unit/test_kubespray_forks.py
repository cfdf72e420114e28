"""ansible's forks from the hosts of the run and the bastion's cores and memory."""

from __future__ import annotations

import pytest

from kubebastion.kubespray.forks import ANSIBLE_DEFAULT, choose_forks

# (hosts, cpus, MB available, configured) -> (forks, the reason starts with)
CASES = {
    "lab 1+30 on 2 cores, 22 GB: one per host": (
        (31, 2, 22759, None), (31, "one per host (31 hosts)")),
    "1+3: no more forks than hosts": ((4, 2, 3000, None), (4, "one per host (4 hosts)")),
    "200 nodes, 2 cores: the cores": (
        (200, 2, 16000, None), (32, "2 cores drive 32 (16 per core)")),
    "200 nodes, 8 cores, 16 GB: the cores": (
        (200, 8, 16000, None), (128, "8 cores drive 128")),
    "200 nodes on a 2 GB VM: the memory": (
        (200, 4, 1500, None), (23, "1500 MB available holds 23 (at 48 MB each, 384 MB kept)")),
    "1 GB VM, 30 hosts: memory keeps it near ansible's default": (
        (30, 1, 700, None), (6, "700 MB available holds 6")),
    "almost no memory: still one": ((30, 2, 300, None), (1, "300 MB available holds 1")),
    "one core": ((31, 1, 8000, None), (16, "1 core drive 16")),
    "unknown bastion: ansible's default": (
        (31, 0, 0, None), (ANSIBLE_DEFAULT, "ansible's default: the bastion's cores and "
                                            "memory are unknown")),
    "unknown memory: the cores decide": ((100, 2, 0, None), (32, "2 cores drive 32")),
    "the inventory's value wins": (
        (31, 2, 22759, 5), (5, "set in the inventory (kubespray forks: 5)")),
    "the inventory's value wins even past the hosts": (
        (4, 2, 22759, 50), (50, "set in the inventory (kubespray forks: 50)")),
}


@pytest.mark.parametrize(("given", "wanted"), list(CASES.values()), ids=list(CASES))
def test_forks(given: tuple[int, int, int, int | None], wanted: tuple[int, str]) -> None:
    forks = choose_forks(*given)
    assert forks.value == wanted[0], forks
    assert forks.reason.startswith(wanted[1]), forks.reason


def test_the_reason_names_every_limit() -> None:
    reason = choose_forks(31, 2, 22759).reason
    assert "one per host (31 hosts)" in reason and "2 cores drive 32" in reason
    assert "22759 MB available holds 466" in reason
    assert choose_forks(31, 2, 22759).as_dict()["memory_allows"] == 466
