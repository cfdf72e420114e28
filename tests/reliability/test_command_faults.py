"""While a command runs: sshd killed, the connection cut, megabytes of output; and a file
write interrupted at random points must leave the old or the new file, never a partial one.

All through the bastion, on a node (the jump path is the longer one), with
``command_timeout`` short enough for the bounds to mean something.
"""

from __future__ import annotations

import hashlib
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

import lab
from kubebastion.errors import KubeBastionError, SSHError
from kubebastion.runtime import build_run
from kubebastion.ssh import remote
from kubebastion.ssh.shell import HostShell, shell_for_host
from tests.reliability.conftest import RLAB_PARAMS, Figures
from tests.reliability.helpers import as_root, kill_pids, session_sshds, write_config

#: The section title in docs/reliability.md.
TITLE = "While a command runs: sshd killed, connection cut, megabytes, interrupted writes"
pytestmark = pytest.mark.lab

COMMAND_TIMEOUT = 10.0
SLACK = 2.0
OUTPUT_BYTES = 8 * 1024 * 1024
OUTPUT_BOUND = 60.0
WRITE_BYTES = 4 * 1024 * 1024
WRITE_TRIALS = 10
SEED = 7
#: After this long past the bound, a blocked operation counts as hung.
HANG = 30.0


@pytest.fixture(scope="module")
def config(rlab: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(rlab, tmp_path_factory.mktemp("command"), extras={
        "connect_timeout": 5, "command_timeout": COMMAND_TIMEOUT})


@pytest.fixture(autouse=True)
def lab_back_in_shape(rlab: lab.LabState) -> Iterator[None]:
    yield
    lab.up(**RLAB_PARAMS)


@dataclass
class Outcome:
    value: object = None
    error: BaseException | None = None
    finished: float = 0.0


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, Outcome]:
    outcome = Outcome()

    def target() -> None:
        try:
            outcome.value = work()
        except BaseException as exc:  # handed to the test
            outcome.error = exc
        outcome.finished = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


class NodeShell:
    """A connected shell on one node, through the bastion, closed on exit (errors while
    closing are the subject of their own test, not of the others)."""

    def __init__(self, config: Path, node: str) -> None:
        self.run = build_run(config)
        self.shell: HostShell = shell_for_host(self.run.nornir.inventory.hosts[node],
                                               self.run.nornir.config)
        remote.run(self.shell, "true")  # logged in before the fault

    def __enter__(self) -> HostShell:
        return self.shell

    def __exit__(self, *exc: object) -> None:
        with suppress(Exception):
            self.run.close()
        with suppress(Exception):
            self.run.nornir.close_connections(on_good=True, on_failed=True)


def test_closing_a_run_after_a_file_was_written_to_a_node_raises_nothing(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    """``write_file`` uploads over SFTP; the node's connection runs through the bastion's."""
    node = rlab.nodes[-1].name
    run = build_run(config)
    shell = shell_for_host(run.nornir.inventory.hosts[node], run.nornir.config)
    remote.write_file(shell, f"/home/{rlab.user}/reliability-close.txt", b"closing\n")
    error = ""
    try:
        run.close()
    except Exception as exc:  # what an operator's script would see after a good write
        error = f"{type(exc).__name__}: {exc}"
        with suppress(Exception):
            run.nornir.close_connections(on_good=True, on_failed=True)
    figures.record(f"`Run.close()` after a file was written to a node ({node}, SFTP through "
                   "the bastion)", "returns, no exception", error or "returned", not error)
    assert not error, error


def wait_for_process(state: lab.LabState, host: str, pattern: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if as_root(state, host, f"pgrep -u {state.user} -f {pattern!r}").returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never started on {host}")


def test_megabytes_on_stdout_and_stderr_at_once_do_not_deadlock(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    node = rlab.nodes[-1].name
    out_line, err_line = "0123456789abcde\n", "fedcba987654321\n"
    command = (f"(yes {out_line.strip()} | head -c {OUTPUT_BYTES}) & "
               f"(yes {err_line.strip()} | head -c {OUTPUT_BYTES} >&2); wait")
    with NodeShell(config, node) as shell:
        started = time.monotonic()
        result = remote.run(shell, command, timeout=OUTPUT_BOUND + 30)
        seconds = time.monotonic() - started
    exact = (result.stdout == out_line * (OUTPUT_BYTES // 16)
             and result.stderr == err_line * (OUTPUT_BYTES // 16))
    megabytes = OUTPUT_BYTES // 2**20
    figures.seconds(f"{megabytes} MB on stdout and {megabytes} MB on stderr at once ({node})",
                    seconds, OUTPUT_BOUND, f"completes, every byte, ≤ {OUTPUT_BOUND:g} s",
                    ok=exact)
    assert result.ok and exact, (len(result.stdout), len(result.stderr))
    assert seconds <= OUTPUT_BOUND


def test_sshd_killed_mid_command_is_a_clear_error_within_the_command_timeout(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    node = rlab.nodes[0].name
    with NodeShell(config, node) as shell:
        thread, outcome = in_thread(lambda: remote.run(shell, "sleep 31; echo finished"))
        wait_for_process(rlab, node, "sleep 31")
        killed_at = time.monotonic()
        assert kill_pids(session_sshds(rlab, node)) > 0
        thread.join(COMMAND_TIMEOUT + 30)
        hung = thread.is_alive()
    seconds = (outcome.finished or time.monotonic()) - killed_at
    message = f"{type(outcome.error).__name__}: {outcome.error}"
    clear = isinstance(outcome.error, KubeBastionError) and node in message
    figures.seconds(f"sshd killed mid-command ({node})", seconds, COMMAND_TIMEOUT + SLACK,
                    f"clear error ≤ command_timeout {COMMAND_TIMEOUT:g} s + 2 s",
                    detail=message, ok=clear and not hung)
    assert not hung, "the command never returned"
    assert clear, message
    assert seconds <= COMMAND_TIMEOUT + SLACK, message


def test_connection_cut_mid_command_is_a_clear_error_within_the_command_timeout(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    node = rlab.nodes[0].name
    with NodeShell(config, node) as shell:
        thread, outcome = in_thread(lambda: remote.run(shell, "sleep 32; echo finished"))
        wait_for_process(rlab, node, "sleep 32")
        lab.link_down(rlab, node)
        cut_at = time.monotonic()
        try:
            thread.join(COMMAND_TIMEOUT + 30)
            hung = thread.is_alive()
        finally:
            lab.link_up(rlab, node)
    seconds = (outcome.finished or time.monotonic()) - cut_at
    message = f"{type(outcome.error).__name__}: {outcome.error}"
    clear = isinstance(outcome.error, KubeBastionError) and node in message
    figures.seconds(f"connection cut mid-command ({node}: link down)", seconds,
                    COMMAND_TIMEOUT + SLACK,
                    f"clear error ≤ command_timeout {COMMAND_TIMEOUT:g} s + 2 s",
                    detail=message, ok=clear and not hung)
    assert not hung, "the command never returned"
    assert clear, message
    assert seconds <= COMMAND_TIMEOUT + SLACK, message


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _payload(trial: int) -> bytes:
    return (b"%04d" % trial) * (WRITE_BYTES // 4)


def _target_state(state: lab.LabState, node: str, path: str) -> tuple[str, str, list[str]]:
    """(sha256, mode, leftovers next to the target or in /tmp)."""
    folder = path.rsplit("/", 1)[0]
    name = path.rsplit("/", 1)[1]
    out = as_root(state, node, f"sha256sum {path} | cut -d' ' -f1; stat -c %a {path}; "
                  f"ls -a {folder} /tmp | grep -e '^.{name}.kubebastion-' "
                  "-e '^.kubebastion-upload.' || true").stdout.split()
    return out[0], out[1], out[2:]


def test_writes_killed_at_random_points_leave_the_old_or_the_new_file(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    node = rlab.nodes[-1].name
    path = f"/home/{rlab.user}/reliability-target.bin"
    current = _payload(0)
    as_root(rlab, node, f"rm -f {path} /tmp/.kubebastion-upload.*")
    timings = []
    for calibration in (current, _payload(WRITE_TRIALS + 1), current):
        with NodeShell(config, node) as shell:  # timed as the trials run: a fresh connection
            started = time.monotonic()
            remote.write_file(shell, path, calibration, mode=0o640)
            timings.append(time.monotonic() - started)
    write_seconds = sorted(timings)[1]
    rng = random.Random(SEED)
    tally = {"old": 0, "new": 0, "torn": 0}
    whole = {_sha(current), _sha(_payload(WRITE_TRIALS + 1))}  # payloads written whole
    worst_error = 0.0
    messages = []
    for trial in range(1, WRITE_TRIALS + 1):
        new = _payload(trial)
        # Half the kills anywhere in the write, half in its tail (install and rename).
        low = 0.0 if trial % 2 else 0.7 * write_seconds
        delay = rng.uniform(low, 1.3 * write_seconds)
        with NodeShell(config, node) as shell:
            thread, outcome = in_thread(partial(remote.write_file, shell, path, new,
                                                mode=0o640))
            time.sleep(delay)
            killed_at = time.monotonic()
            kill_pids(session_sshds(rlab, node))
            thread.join(COMMAND_TIMEOUT + 30)
            assert not thread.is_alive(), f"trial {trial}: the write never returned"
        if outcome.error is not None:
            worst_error = max(worst_error, outcome.finished - killed_at)
            messages.append(f"{type(outcome.error).__name__}: {outcome.error}")
        sha, mode, _ = _target_state(rlab, node, path)
        # A writer whose sshd was killed may still finish its rename a moment later (its
        # script does not die with the connection), so an earlier trial's payload can land
        # after that trial was checked: any whole payload is fine, only a partial one is not.
        whole.add(_sha(new))
        kind = "new" if sha == _sha(new) else "old" if sha in whole else "torn"
        tally[kind] += 1
        assert mode == "640", f"trial {trial}: mode {mode}"
        assert kind != "torn", f"trial {trial} (kill after {delay:.3f} s): a partial file"
    _, _, leftovers = _target_state(rlab, node, path)
    figures.count(f"file write ({WRITE_BYTES // 2**20} MB, through the bastion) killed at "
                  f"random points, {WRITE_TRIALS} trials", tally["torn"], 0, "partial files",
                  "the old or the new file, never a partial one",
                  detail=f"old {tally['old']}, new {tally['new']}; a write ≈ "
                         f"{write_seconds:.2f} s; errors after the kill "
                         f"≤ {worst_error:.2f} s; leftover temp files: {len(leftovers)}; "
                         f"seed {SEED}; first error: {messages[0] if messages else '-'}")
    assert tally["torn"] == 0


def test_connection_cut_during_an_upload_fails_within_the_command_timeout(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    """The sftp upload of ``write_file`` with the link gone: no FIN, no RST, only deadlines
    can end it."""
    node = rlab.nodes[-1].name
    path = f"/home/{rlab.user}/reliability-upload.bin"
    old = _payload(100)
    new = _payload(101) * 2
    with NodeShell(config, node) as shell:
        remote.write_file(shell, path, old, mode=0o640)
    as_root(rlab, node, "rm -f /tmp/.kubebastion-upload.*")
    with NodeShell(config, node) as shell:
        thread, outcome = in_thread(lambda: remote.write_file(shell, path, new, mode=0o640))
        wait_for_upload(rlab, node)
        lab.link_down(rlab, node)
        cut_at = time.monotonic()
        try:
            # Waits past the bound to measure how long it really takes (up to a hang).
            thread.join(COMMAND_TIMEOUT + SLACK)
            stack = where_blocked(thread) if thread.is_alive() else ""
            thread.join(HANG)
            hung = thread.is_alive()
            seconds = (outcome.finished if not hung else time.monotonic()) - cut_at
        finally:
            lab.link_up(rlab, node)
        thread.join(60)  # with the link back, let it end either way before closing
    sha, _, _ = _target_state(rlab, node, path)
    whole = sha in (_sha(old), _sha(new))
    message = f"{type(outcome.error).__name__}: {outcome.error}" if not hung else "hung"
    if stack:
        message += f"; at the bound it was still in: {stack}"
    figures.seconds(f"connection cut during a {len(new) // 2**20} MB upload ({node})", seconds,
                    COMMAND_TIMEOUT + SLACK,
                    f"error ≤ command_timeout {COMMAND_TIMEOUT:g} s + 2 s; old or new file",
                    detail=message, ok=not hung and whole and outcome.error is not None)
    assert whole, "a partial file"
    assert not hung, f"the upload was still blocked {seconds:.0f} s after the link went down"
    assert seconds <= COMMAND_TIMEOUT + SLACK, message


def where_blocked(thread: threading.Thread, frames: int = 6) -> str:
    """The innermost frames of a blocked thread, for the report."""
    frame = sys._current_frames().get(thread.ident or 0)
    if frame is None:
        return "?"
    stack = traceback.extract_stack(frame)[-frames:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))


def wait_for_upload(state: lab.LabState, node: str, timeout: float = 20) -> None:
    """Until an upload temp file on the node has some bytes in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sizes = as_root(state, node, "stat -c %s /tmp/.kubebastion-upload.* 2>/dev/null"
                        ).stdout.split()
        if any(int(s) > 0 for s in sizes):
            return
        time.sleep(0.05)
    raise AssertionError("the upload never started")


def test_uploads_left_by_dead_connections_are_swept_by_a_later_write(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    """A killed connection leaves its upload temp file (nothing can remove it then); the
    next write on the host removes the user's own ones older than an hour, and only those."""
    node = rlab.nodes[-1].name
    stale, fresh, foreign = ("/tmp/.kubebastion-upload.stale001",
                             "/tmp/.kubebastion-upload.fresh001",
                             "/tmp/.kubebastion-upload.root0001")
    as_root(rlab, node, f"rm -f /tmp/.kubebastion-upload.*; "
            f"su {rlab.user} -c 'touch {stale} {fresh}'; touch {foreign}; "
            f"touch -d '2 hours ago' {stale} {foreign}")
    with NodeShell(config, node) as shell:
        remote.write_file(shell, f"/home/{rlab.user}/reliability-sweep.txt",
                          f"{time.time()}\n".encode())
    left = set(as_root(rlab, node, "ls -a /tmp").stdout.split())
    as_root(rlab, node, f"rm -f {foreign} {fresh}")
    swept = stale.rsplit("/", 1)[1] not in left
    kept = {fresh.rsplit("/", 1)[1], foreign.rsplit("/", 1)[1]} <= left
    figures.record("upload temp file left by a dead connection (2 h old)",
                   "removed by the next write; recent and other users' files kept",
                   f"stale removed: {swept}; recent and root's kept: {kept}", swept and kept)
    assert swept, "the stale upload is still there"
    assert kept, "a recent upload or another user's file was removed"


def test_an_upload_never_writes_through_a_planted_symlink(
        rlab: lab.LabState, config: Path, figures: Figures) -> None:
    """Uploads go to /tmp, which every user shares: the file is created exclusively, so
    a symlink planted at its path (by root here, as another user could) is refused."""
    node = rlab.nodes[-1].name
    planted = "/tmp/.kubebastion-upload.planted0001"
    victim = f"/home/{rlab.user}/reliability-victim.txt"
    as_root(rlab, node, f"echo theirs > {victim}; ln -sfn {victim} {planted}")
    error = ""
    with NodeShell(config, node) as shell:
        try:
            shell.put(b"ours\n", planted, exclusive=True)
        except SSHError as exc:
            error = str(exc)
    content = as_root(rlab, node, f"cat {victim}; rm -f {planted} {victim}").stdout
    ok = bool(error) and content == "theirs\n"
    figures.record("upload path taken by a planted symlink", "refused; the link's target "
                   "untouched", f"refused: {bool(error)}; target {content.strip()!r}", ok,
                   detail=error)
    assert error, "the upload wrote through the symlink"
    assert content == "theirs\n"
