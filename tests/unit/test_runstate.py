"""A run's state lives on its Nornir config: made once, shared by filtered copies only."""

from __future__ import annotations

from nornir.core import Nornir
from nornir.core.inventory import Defaults, Groups, Hosts, Inventory
from nornir.plugins.runners import SerialRunner

from kubebastion.runstate import LOCKS, run_state


def nornir() -> Nornir:
    return Nornir(inventory=Inventory(hosts=Hosts(), groups=Groups(), defaults=Defaults()))


def test_made_once_per_run_and_seen_by_its_filtered_copies() -> None:
    made: list[set[str]] = []

    def make() -> set[str]:
        made.append(set())
        return made[-1]

    first, second = nornir(), nornir()
    copy = first.filter(filter_func=lambda host: False).with_runner(SerialRunner())
    assert run_state(first.config, LOCKS, make) is run_state(copy.config, LOCKS, make)
    assert len(made) == 1
    assert run_state(second.config, LOCKS, make) is not run_state(first.config, LOCKS, make)
    assert len(made) == 2
