"""Load: ``check`` across 60 nodes behind the bastion (61 hosts), every host at once
(Nornir's runner has one worker per host), without an error and with one login per host;
and the same lab with its bastion unreachable, where every host must still fail within
the connect timeout.

Its own lab (``big_lab``: 1 control plane + 59 workers), up for this module only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import lab
from kubebastion.check import check_host
from tests.reliability.conftest import Figures
from tests.reliability.helpers import accepted_logins, bastion_back, invoke, timed_run, write_config

#: The section title in docs/reliability.md.
TITLE = "Load: 61 hosts at once"
pytestmark = [pytest.mark.lab, pytest.mark.big_lab]

RUNS = 2
CHECK_BOUND = 30.0
CONNECT_TIMEOUT = 1.0
SLACK = 2.0


@pytest.fixture(scope="module")
def config(big_lab: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_config(big_lab, tmp_path_factory.mktemp("load"))
    workers = yaml.safe_load(path.read_text())["runner"]["options"]["num_workers"]
    assert workers >= len(big_lab.hosts), "the runner must run every host at once"
    return path


def test_check_across_60_nodes_at_full_parallelism(big_lab: lab.LabState, config: Path,
                                                   figures: Figures) -> None:
    hosts = {h.name for h in big_lab.hosts}
    assert len(big_lab.nodes) == 60
    problems = []
    for n in range(RUNS):
        before = accepted_logins(big_lab)
        run = invoke("check", "--config", config, "--json")
        after = accepted_logins(big_lab)
        rows = run.rows() if run.stdout.strip().startswith("{") else {}
        failed = sorted(h for h, r in rows.items() if r["status"] != "ok")
        logins = {h: after[h] - before[h] for h in hosts}
        not_once = {h: c for h, c in logins.items() if c != 1}
        ok = run.code == 0 and set(rows) == hosts and not failed and not not_once
        figures.seconds(f"`invoke check` on {len(hosts)} hosts (60 nodes through the "
                        f"bastion), run {n + 1}", run.seconds, CHECK_BOUND,
                        f"0 errors, 1 login per host, ≤ {CHECK_BOUND:g} s",
                        detail=f"{len(rows)} hosts ok: {len(rows) - len(failed)}; failed: "
                               f"{failed[:5]}; hosts not logged into exactly once: "
                               f"{dict(list(not_once.items())[:5])}", ok=ok)
        if not ok:
            problems.append(f"run {n + 1}: exit {run.code}, failed {failed[:5]}, logins "
                            f"{dict(list(not_once.items())[:5])}: {run.stderr[-500:]}")
        if run.seconds > CHECK_BOUND:
            problems.append(f"run {n + 1}: {run.seconds:.1f} s")
    assert not problems, problems


def test_an_unreachable_bastion_fails_all_61_hosts_within_the_connect_timeout(
        big_lab: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    config = write_config(big_lab, tmp_path, extras={"connect_timeout": CONNECT_TIMEOUT})
    lab.link_down(big_lab, "bastion")
    try:
        results, seconds = timed_run(config, check_host)
    finally:
        bastion_back(big_lab)
    slowest = max(seconds.values())
    median = sorted(seconds.values())[len(seconds) // 2]
    everyone = len(results.failed_hosts) == len(big_lab.hosts)
    figures.seconds(f"unreachable bastion, `check` on {len(big_lab.hosts)} hosts",
                    slowest, CONNECT_TIMEOUT + SLACK,
                    f"every host fails ≤ connect_timeout {CONNECT_TIMEOUT:g} s + 2 s",
                    detail=f"median host {median:.1f} s, slowest {slowest:.1f} s", ok=everyone)
    assert everyone
    assert slowest <= CONNECT_TIMEOUT + SLACK, (
        f"the slowest host failed after {slowest:.1f} s (median {median:.1f} s): each waiting "
        "host retries the bastion connection in turn")
