"""State a run keeps beside Nornir's own, on the run itself: no module-level tables.

A run is one Nornir object and the filtered copies made from it (``nornir.filter``,
``with_runner``): Nornir hands every copy the same config object, and passes that config
to the connection plugin, so what lives in the config's ``user_defined`` mapping is
shared by exactly one run and goes away with it. Two runs in one process, on one
inventory or two, share nothing. What lives here: the SSH connection pool
(``ssh.connection``), the whole inventory behind a filtered copy (``runtime``), and the
cluster locks the run holds (``runlock``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from nornir.core.configuration import Config

T = TypeVar("T")

#: Keys of the run's state in ``config.user_defined`` (a prefix no Nornir plugin uses).
CONNECTIONS, INVENTORY, LOCKS = (
    "kubebastion.connections", "kubebastion.inventory", "kubebastion.locks")


def run_state(config: Config, key: str, make: Callable[[], T]) -> T:
    """The run's value under ``key``, made on first use. Threads opening connections
    at once get the same value: ``dict.setdefault`` is atomic (one bytecode under the
    GIL, keys are str), so the value one thread made is the one every thread gets."""
    store = config.user_defined
    if key not in store:
        store.setdefault(key, make())
    return cast(T, store[key])
