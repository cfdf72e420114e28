"""Shared fixtures for the lab tests (tests/lab/): one real lab per test session.

``lab_env`` (session scope) yields the :class:`lab.LabState` of a small lab
(prefix ``kbt``: bastion + 1 control plane + 2 workers, user ``kbtlab``,
passwordless sudo, state in ``lab/state/pytest-kbt/``) and always tears it down at the
end of the session, failed tests or not. The prefix comes from the environment variable
``KUBEBASTION_LAB_PREFIX`` (default ``kbt``; user ``<prefix>lab``, state in
``lab/state/pytest-<prefix>/``), so two people can run the lab tests side by side::

    KUBEBASTION_LAB_PREFIX=kbt2 pytest tests/lab

Useful fields:

- ``lab_env.nornir_config`` -> ``InitNornir(config_file=str(...))`` (absolute paths inside)
- ``lab_env.inventory_dir``, ``lab_env.known_hosts``, ``lab_env.private_key``,
  ``lab_env.ssh_config`` (``ssh -F`` with host aliases bastion, k8s-m0, k8s-w0, ...)
- ``lab_env.user``, ``lab_env.bastion`` / ``lab_env.nodes`` / ``lab_env.host(name)``:
  ``HostState`` with ``namespace``, ``ssh_address``, ``private_address``, ``host_dir``,
  ``sshd_log``, ``sshd_pid``. The bastion's ``ssh_address`` depends on which operator /30
  was free (``lab_env.operator_network``): never hard-code 198.18.0.2.

Paths, names, addresses and the user never change during a session. Host keys and sshd
pids can (tests of the lab itself restart sshds; the ``lab_destructive`` ones, which
rebuild and take the lab down and up again, run at the very end of the session): read
them fresh with ``lab.load_state(lab_env.state_dir)`` when it matters. A test that changes the lab
(NAT on the bastion, a link down, a host key) must undo it, e.g. with
``lab.reset_bastion_egress(state)``, ``lab.link_up(state, name)`` or ``lab.up(**lab_params)``
(fixture ``lab_params``), which repairs the lab in place.

The tests are skipped, with the reason, when not root or when network namespaces
cannot be created here. A second pytest session with the same prefix waits for the first
(a per-prefix lock) instead of tearing its lab down; one with another prefix runs beside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

# The `lab` package lives at the repo root (not part of the installed distribution):
# pyproject.toml's `pythonpath = ["."]` makes it importable.
import lab
from lab.lock import held, session_lock
from tests.figures import FIGURES
from tests.labgate import require_lab

PREFIX_ENV = "KUBEBASTION_LAB_PREFIX"
PREFIX = os.environ.get(PREFIX_ENV) or "kbt"

LAB_PARAMS: dict[str, Any] = {
    "name_prefix": PREFIX,
    "control_planes": 1,
    "workers": 2,
    "user": f"{PREFIX}lab",
    "state_dir": lab.DEFAULT_STATE_DIR / f"pytest-{PREFIX}",
}


# Waiting for another session must end before pytest-timeout (300 s) kills the first test;
# with `--timeout 0` a longer wait can be asked for through the environment.
LOCK_WAIT = float(os.environ.get("KUBEBASTION_LAB_LOCK_WAIT", "270"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lab_destructive: rebuilds or removes the shared lab; moved to the end of the session",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run ``lab_destructive`` tests last, so session fixtures of other lab test modules
    (built on the shared lab) are not wiped by a rebuild halfway through the session."""
    last = [item for item in items if item.get_closest_marker("lab_destructive")]
    if last:
        ids = {id(item) for item in last}
        items[:] = [item for item in items if id(item) not in ids] + last


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Measured figures (tests/figures.py), shown whether the tests passed or not."""
    if FIGURES:
        terminalreporter.section("lab figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def lab_params() -> dict[str, Any]:
    """The keyword arguments ``lab_env`` passed to ``lab.up`` (call ``lab.up(**lab_params)``
    to repair the session lab in place after a test changed it)."""
    return dict(LAB_PARAMS)


@pytest.fixture(scope="session")
def lab_env() -> Iterator[lab.LabState]:
    """A running lab for the whole session (see the module docstring); torn down at the end."""
    require_lab()
    try:
        lab.Topology(PREFIX, LAB_PARAMS["control_planes"], LAB_PARAMS["workers"])
    except lab.LabError as exc:
        pytest.fail(f"${PREFIX_ENV}={PREFIX!r} cannot be used: {exc}")
    with ExitStack() as stack:
        try:
            stack.enter_context(held(session_lock(PREFIX), timeout=LOCK_WAIT))
        except lab.LabError as exc:
            pytest.fail(f"another test session holds the lab too long ({exc}); run again later")
        # Leftovers of an interrupted earlier session would otherwise be "repaired".
        lab.down(LAB_PARAMS["name_prefix"], LAB_PARAMS["user"], LAB_PARAMS["state_dir"])
        try:
            state = lab.up(**LAB_PARAMS)
        except lab.LabError as exc:
            lab.down(LAB_PARAMS["name_prefix"], LAB_PARAMS["user"], LAB_PARAMS["state_dir"])
            pytest.fail(f"could not bring the test lab up: {exc}")
        try:
            yield state
        finally:
            lab.down(LAB_PARAMS["name_prefix"], LAB_PARAMS["user"], LAB_PARAMS["state_dir"])
