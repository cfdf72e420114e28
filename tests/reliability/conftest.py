"""The reliability and security suite (issue 7): faults, bad input and secrets, each with a
bound, against a lab of its own.

Fixtures:

- ``rlab`` (package scope): a small lab (prefix ``kbr``: bastion + 1 control plane +
  2 workers, user ``kbrlab``, state in ``lab/state/reliability-kbr/``), brought up for this
  suite only and torn down after its last test, failures or not. Another prefix can be
  chosen with ``KUBEBASTION_RELIABILITY_PREFIX`` (two people running the suite at once).
  A test that changes the lab (a link down, a host key, a sudo password, NAT) puts it
  back, usually with ``lab.up(**RLAB_PARAMS)``, which repairs the lab in place.
- ``big_lab`` (module scope, only ``test_load.py``): 1 control plane + 59 workers
  (prefix ``kbrl``), up only for the load test.
- ``figures`` (per test): records what a test measured against its bound. At the end of
  the session every figure and every test outcome goes to ``RESULTS`` (under lab/state/,
  which git ignores); ``scripts/reliability-report`` turns that file into
  docs/reliability.md.

Labs with different prefixes run side by side (per-prefix locks, one operator /30 each),
so this suite never disturbs tests/lab's lab, nor another person's run of this suite with
another prefix.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import lab
from lab.lock import held, session_lock
from tests.labgate import require_lab

REPO = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("KUBEBASTION_RELIABILITY_PREFIX") or "kbr"
BIG_PREFIX = PREFIX[:9] + "l"
# lab/state in the checkout, or the lab's own fallback when the checkout sits where lab
# hosts cannot see it (under /tmp, /root or /home): the same rule as every other lab.
STATE_ROOT = lab.DEFAULT_STATE_DIR
RESULTS = STATE_ROOT / "reliability" / "results.json"
SUITE = "tests/reliability/"

RLAB_PARAMS: dict[str, Any] = {
    "name_prefix": PREFIX,
    "control_planes": 1,
    "workers": 2,
    "user": f"{PREFIX}lab",
    "state_dir": STATE_ROOT / f"reliability-{PREFIX}",
}
BIG_LAB_PARAMS: dict[str, Any] = {
    "name_prefix": BIG_PREFIX,
    "control_planes": 1,
    "workers": 59,
    "user": f"{BIG_PREFIX}lab",
    "state_dir": STATE_ROOT / f"reliability-{BIG_PREFIX}",
}
LOCK_WAIT = float(os.environ.get("KUBEBASTION_LAB_LOCK_WAIT", "270"))


# --- collection order -----------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "big_lab: needs the 60-node lab; runs last in the suite")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The big-lab test last in this suite (the suite's own order is otherwise kept)."""
    ours = [i for i in items if i.nodeid.startswith(SUITE)]
    big = [i for i in ours if i.get_closest_marker("big_lab")]
    if not big:
        return
    ids = {id(i) for i in big}
    last = max(n for n, i in enumerate(items) if i.nodeid.startswith(SUITE))
    rest = [i for i in items[: last + 1] if id(i) not in ids]
    items[:] = rest + big + items[last + 1:]


# --- the labs -------------------------------------------------------------------------


@contextmanager
def running_lab(params: dict[str, Any]) -> Iterator[lab.LabState]:
    """A lab of our own for as long as the block runs, down at the end whatever happens."""
    require_lab()
    prefix = params["name_prefix"]
    with ExitStack() as stack:
        try:
            stack.enter_context(held(session_lock(prefix), timeout=LOCK_WAIT))
        except lab.LabError as exc:
            pytest.fail(f"another test session holds lab {prefix} too long ({exc})")
        down = (prefix, params["user"], params["state_dir"])
        lab.down(*down)  # leftovers of an interrupted earlier session
        stack.callback(lab.down, *down)  # registered first: runs even if `up` fails half-way
        try:
            state = lab.up(**params)
        except lab.LabError as exc:
            pytest.fail(f"could not bring the reliability lab {prefix} up: {exc}")
        yield state


@pytest.fixture(scope="package")
def rlab() -> Iterator[lab.LabState]:
    """This suite's small lab (see the module docstring); torn down after the suite."""
    with running_lab(RLAB_PARAMS) as state:
        yield state


@pytest.fixture(scope="module")
def big_lab() -> Iterator[lab.LabState]:
    """1 control plane + 59 workers, for the load test only; torn down right after it."""
    with running_lab(BIG_LAB_PARAMS) as state:
        yield state


@pytest.fixture(scope="module")
def deployed(rlab: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Nornir config of ``rlab`` with kubespray settings (the lab's stand-in, the local
    wheelhouse), its cluster deployed. Per module, as modules may rebuild the lab
    (``invoke kubespray`` is quick on a healthy cluster: it skips the playbook)."""
    from tests.reliability.helpers import invoke, write_config

    config = write_config(rlab, tmp_path_factory.mktemp("deployed"), kubespray=True)
    result = invoke("kubespray", "--config", config, "--json", timeout=900)
    if result.code != 0:
        pytest.fail(f"could not deploy the reliability lab's cluster:\n{result.output[-3000:]}")
    return config


# --- figures --------------------------------------------------------------------------


@dataclass
class Figure:
    """One fault or bad input tried, its bound, and what was measured."""

    test: str
    fault: str
    bound: str
    measured: str
    ok: bool
    value: float | None = None
    limit: float | None = None
    unit: str = ""
    detail: str = ""


@dataclass
class Collector:
    figures: list[Figure] = field(default_factory=list)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    #: The code under test: what was checked out when the session started.
    commit: str = ""
    dirty: bool = False


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=False).stdout.strip()
    except OSError:
        return ""


COLLECTOR = Collector(
    commit=_git("rev-parse", "--short", "HEAD"),
    dirty=bool(_git("status", "--porcelain", "--", "kubebastion", "tasks.py", "lab")))


class Figures:
    """What one test records; ``seconds``/``count`` return whether the bound held."""

    def __init__(self, test: str) -> None:
        self.test = test

    def record(self, fault: str, bound: str, measured: str, ok: bool, *,
               value: float | None = None, limit: float | None = None, unit: str = "",
               detail: str = "") -> bool:
        COLLECTOR.figures.append(Figure(self.test, fault, bound, measured, ok, value, limit,
                                        unit, detail))
        return ok

    def seconds(self, fault: str, value: float, limit: float, bound: str = "",
                detail: str = "", ok: bool = True) -> bool:
        """A duration that must stay within ``limit`` (and ``ok``: the other checks)."""
        text = bound or f"≤ {limit:g} s"
        return self.record(fault, text, f"{value:.2f} s", ok and value <= limit, value=value,
                           limit=limit, unit="s", detail=detail)

    def count(self, fault: str, value: int, expected: int, what: str, bound: str = "",
              detail: str = "", ok: bool = True) -> bool:
        """A count that must equal ``expected`` (and ``ok``: the other checks)."""
        return self.record(fault, bound or f"{expected} {what}", f"{value} {what}",
                           ok and value == expected, value=float(value),
                           limit=float(expected), unit=what, detail=detail)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith(SUITE):
        return
    entry = COLLECTOR.outcomes.setdefault(
        report.nodeid, {"outcome": "passed", "seconds": 0.0, "message": ""})
    entry["seconds"] += report.duration
    if report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
    else:
        return
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        message = str(report.longrepr[2])
    else:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = getattr(crash, "message", None) or str(report.longrepr or "")
    entry["message"] = message.strip().splitlines()[0][:300] if message.strip() else ""


def _machine() -> dict[str, Any]:
    cpu = ""
    with suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    return {"hostname": socket.gethostname(), "kernel": platform.release(),
            "os": platform.freedesktop_os_release().get("PRETTY_NAME", "")
            if hasattr(platform, "freedesktop_os_release") else "",
            "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not COLLECTOR.outcomes:
        return
    finished = time.time()
    document = {
        "version": 1,
        "started": datetime.fromtimestamp(COLLECTOR.started, UTC).isoformat(timespec="seconds"),
        "finished": datetime.fromtimestamp(finished, UTC).isoformat(timespec="seconds"),
        "seconds": round(finished - COLLECTOR.started, 1),
        "commit": COLLECTOR.commit,
        "dirty": COLLECTOR.dirty,
        "machine": _machine(),
        "tests": [{"test": nodeid, **entry} for nodeid, entry in COLLECTOR.outcomes.items()],
        "figures": [asdict(f) for f in COLLECTOR.figures],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_name(RESULTS.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(RESULTS)
