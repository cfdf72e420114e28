"""How many round trips `nat` makes on a real bastion (issue 16, item 3).

Counted where they cannot be hidden: every SSH channel a client opens goes through
``paramiko.Transport.open_channel`` (an exec and an SFTP session each open one), every
command is one ``Channel.exec_command``, and every SFTP request one
``SFTPClient._async_request``. The counters wrap those methods for the duration of one
in-process ``run_nat`` (what ``invoke nat`` runs), so a step that batches nothing, or
sneaks a command past the shell layer, is counted all the same.

Before the batching (commit 5beaeb4), measured by this test: a first run opened 15
sessions, 14 of them execs (state, then per managed file a state and an install, then
enable, apply, verify) and one SFTP session carrying 20 requests (4 per file); a repair
of one lost file 9 sessions. After: 4 sessions (3 execs, one SFTP session of 4 requests).

Since issue 13, a run that changes something also holds the cluster's lock on the bastion:
one more session, whose exec is the lock holder (it lives for the whole run; ``invoke
deploy`` takes it once for all its steps). It is counted apart ("lock execs") and must be
exactly one per real run and none in a dry run; the bounds above are NAT's own work.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import paramiko
import pytest

import lab
from kubebastion.nat.plan import MANAGED_FILES, SYSCTL_DROPIN
from kubebastion.nat.task import run_nat
from kubebastion.report import CHANGED, OK, HostOutcome
from kubebastion.runlock import LOCK_DIR
from kubebastion.runtime import build_run

pytestmark = pytest.mark.lab


@contextmanager
def counting_ssh() -> Iterator[Counter[str]]:
    """Count session channels, exec requests and SFTP requests while inside."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    originals: dict[tuple[type, str], Callable[..., Any]] = {}

    def wrap(cls: type, name: str, key: Callable[..., str | None]) -> None:
        original = getattr(cls, name)
        originals[(cls, name)] = original

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            label = key(*args, **kwargs)
            if label is not None:
                with lock:
                    counts[label] += 1
            return original(self, *args, **kwargs)

        setattr(cls, name, counted)

    wrap(paramiko.Transport, "open_channel",
         lambda kind, *a, **k: "sessions" if kind == "session" else None)
    wrap(paramiko.Channel, "exec_command",
         lambda command, *a, **k: "lock execs" if LOCK_DIR in str(command) else "execs")
    wrap(paramiko.SFTPClient, "_async_request", lambda *a, **k: "sftp requests")
    try:
        yield counts
    finally:
        for (cls, name), original in originals.items():
            setattr(cls, name, original)


def nat_sessions(counts: Counter[str]) -> int:
    """Sessions of NAT's own work: all of them but the cluster lock's holder."""
    return counts["sessions"] - counts["lock execs"]


def nat_once(state: lab.LabState, *, remove: bool = False,
             dry_run: bool = False) -> tuple[HostOutcome, Counter[str]]:
    run = build_run(state.nornir_config, dry_run=dry_run)
    try:
        with counting_ssh() as counts:
            rows = run_nat(run, remove=remove)
    finally:
        run.close()
    (row,) = rows
    return row, counts


def managed_files(state: lab.LabState) -> str:
    fresh = lab.load_state(state.state_dir) or state
    return lab.host_exec(fresh, "bastion", ["sh", "-c", "ls " + " ".join(MANAGED_FILES)
                                            + " 2>/dev/null || true"]).stdout


@pytest.fixture
def bare_bastion(lab_env: lab.LabState) -> Iterator[lab.LabState]:
    """The bastion without any NAT of ours, before and after the test."""
    nat_once(lab_env, remove=True)
    lab.reset_bastion_egress(lab_env)
    try:
        yield lab_env
    finally:
        nat_once(lab_env, remove=True)
        lab.reset_bastion_egress(lab_env)


def test_nat_first_run_at_most_four_round_trips_second_run_one(
        bare_bastion: lab.LabState) -> None:
    dry, dry_counts = nat_once(bare_bastion, dry_run=True)
    assert dry.status == CHANGED, dry
    assert managed_files(bare_bastion).split() == [], "the dry run wrote files"

    first, first_counts = nat_once(bare_bastion)
    second, second_counts = nat_once(bare_bastion)
    print(f"\nNAT round trips: dry run {dict(dry_counts)}, first run {dict(first_counts)}, "
          f"second run {dict(second_counts)}")
    assert first.status == CHANGED, first
    assert sorted(managed_files(bare_bastion).split()) == sorted(MANAGED_FILES)
    assert second.status == OK, second
    assert str(second.data["summary"]).startswith("no change"), second
    # state, one upload (one SFTP session), one install script, the state again
    assert nat_sessions(first_counts) <= 4, first_counts
    assert first_counts["execs"] <= 3, first_counts
    assert nat_sessions(second_counts) == 1 and second_counts["execs"] == 1, second_counts
    assert first_counts["lock execs"] == second_counts["lock execs"] == 1
    assert dry_counts["sessions"] == 1 and dry_counts["execs"] == 1, dry_counts
    assert dry_counts["lock execs"] == 0, dry_counts


def test_nat_repairs_one_lost_file_in_four_round_trips(bare_bastion: lab.LabState) -> None:
    """Only what differs is uploaded: one file deleted by hand comes back, alone."""
    nat_once(bare_bastion)
    fresh = lab.load_state(bare_bastion.state_dir) or bare_bastion
    lab.host_exec(fresh, "bastion", ["rm", "-f", MANAGED_FILES[1]])
    row, counts = nat_once(bare_bastion)
    assert row.status == CHANGED, row
    assert sorted(managed_files(bare_bastion).split()) == sorted(MANAGED_FILES)
    assert nat_sessions(counts) <= 4 and counts["execs"] <= 3, counts
    assert counts["lock execs"] == 1, counts


def test_a_file_not_ours_at_one_of_our_paths_is_backed_up_before_it_is_replaced(
        bare_bastion: lab.LabState) -> None:
    fresh = lab.load_state(bare_bastion.state_dir) or bare_bastion
    theirs = "# someone else's forwarding setting\nnet.ipv4.ip_forward = 1\n"
    lab.host_exec(fresh, "bastion", ["sh", "-c", f"cat > {SYSCTL_DROPIN}"], input=theirs)
    row, counts = nat_once(bare_bastion)
    assert row.status == CHANGED, row
    assert nat_sessions(counts) <= 4, counts
    listing = lab.host_exec(fresh, "bastion", ["sh", "-c", f"for f in {SYSCTL_DROPIN}.*; do "
                                               'echo "== $f"; cat "$f"; done']).stdout
    assert f"== {SYSCTL_DROPIN}.kubebastion-backup-" in listing, listing
    assert theirs in listing
    ours = lab.host_exec(fresh, "bastion", ["cat", SYSCTL_DROPIN]).stdout
    assert "Managed by kubebastion" in ours
