"""kubeconfig writes under kill -9, and concurrent writers.

Three writers, killed at random points (100 trials each for the first two):

- the operator's own kubeconfig, written by ``merge_local`` (``fetch-kubeconfig --local``:
  flock, read, merge, backup, temp file, fsync, rename), in a child process;
- the bastion's kubeconfig, written by the remote committer (``write_files``' install
  script as ``kubeconfig.remote.commit`` runs it: flock, compare-and-swap on the checksum,
  backup, fsync, rename), run on the bastion as the user;
- ``invoke fetch-kubeconfig`` itself, through its test hook (a pause before the rename),
  killed on the bastion side and on the operator side.

After every trial the file is complete (the old or the new one, byte for byte), 0600, the
old content is in a backup when the new one is there, and the other contexts are kept.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest
import yaml

import lab
from kubebastion.kubeconfig.remote import (
    PAUSE_ENV,
    RemoteText,
    kubeconfig_write,
    lock_path,
    prune_command,
)
from kubebastion.kubeconfig.task import bastion_entry, merged_text
from kubebastion.ssh.remote import install_files_command
from tests.reliability.conftest import Figures
from tests.reliability.helpers import (
    REPO,
    as_root,
    as_user,
    finish,
    fresh,
    host_argv,
    invoke,
    spawn_invoke,
)

#: The section title in docs/reliability.md.
TITLE = "kubeconfig writes under kill -9, and concurrent writers"
pytestmark = pytest.mark.lab

TRIALS = 100
SEED = 11
CONTEXTS = 5  # trials rotate over a few context names: the file stays the same size
OTHER_CONTEXTS = 8
WARM_WRITERS = 4
CONCURRENT_LOCAL = 8
PAUSE = 4.0


def _b64(rng: random.Random, size: int) -> str:
    return base64.b64encode(rng.randbytes(size)).decode()


def fake_admin_conf(rng: random.Random) -> str:
    """Shaped like kubespray's admin.conf (the names every cluster shares)."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "cluster.local", "cluster": {
            "server": "https://127.0.0.1:6443",
            "certificate-authority-data": _b64(rng, 1100)}}],
        "users": [{"name": "kubernetes-admin", "user": {
            "client-certificate-data": _b64(rng, 1100),
            "client-key-data": _b64(rng, 1700)}}],
        "contexts": [{"name": "kubernetes-admin@cluster.local",
                      "context": {"cluster": "cluster.local", "user": "kubernetes-admin"}}],
        "current-context": "kubernetes-admin@cluster.local",
    })


def someone_elses_kubeconfig(rng: random.Random) -> str:
    """The operator's other clusters: what must survive every trial."""
    names = [f"other-{n}" for n in range(OTHER_CONTEXTS)]
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": names[0], "preferences": {},
        "clusters": [{"name": n, "cluster": {"server": f"https://198.18.9.{i + 1}:6443",
                                             "certificate-authority-data": _b64(rng, 1100)}}
                     for i, n in enumerate(names)],
        "users": [{"name": n, "user": {"client-certificate-data": _b64(rng, 1100),
                                       "client-key-data": _b64(rng, 1700)}} for n in names],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in names],
    })


def trial_entry(trial: int) -> tuple[str, str]:
    return f"trial-{trial % CONTEXTS}", f"https://198.18.1.10:{6443 + trial}"


def context_names(text: str) -> set[str]:
    return {c["name"] for c in (yaml.safe_load(text) or {}).get("contexts") or []}


def sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


class Tally:
    def __init__(self) -> None:
        self.kinds = {"old": 0, "new": 0, "torn": 0}
        self.problems: list[str] = []

    def check(self, trial: int, delay: float, now: bytes, old: bytes, new: bytes, mode: int,
              backup_has_old: bool, required: set[str]) -> str:
        kind = "old" if now == old else "new" if now == new else "torn"
        self.kinds[kind] += 1
        where = f"trial {trial} (kill after {delay * 1000:.1f} ms)"
        if kind == "torn":
            self.problems.append(f"{where}: a partial or foreign file ({len(now)} bytes)")
            return kind
        if mode != 0o600:
            self.problems.append(f"{where}: mode {mode:o}")
        if kind == "new" and not backup_has_old:
            self.problems.append(f"{where}: new file but no backup of the old one")
        missing = required - context_names(now.decode())
        if missing:
            self.problems.append(f"{where}: contexts lost: {sorted(missing)}")
        return kind

    def summary(self) -> str:
        return f"old {self.kinds['old']}, new {self.kinds['new']}, torn {self.kinds['torn']}"


# --- the operator's kubeconfig (merge_local) ------------------------------------------


def spawn_writer(path: Path, admin: Path, trial: int, *extra: str) -> subprocess.Popen[str]:
    context, server = trial_entry(trial)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.kubeconfig_writer", str(path), context,
         server, str(admin), *extra],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def go(proc: subprocess.Popen[str]) -> None:
    """Start a ready writer; returns once it is running."""
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "started"


def calibrate(path: Path, admin: Path, runs: int = 3) -> tuple[float, float]:
    """(read+merge seconds, whole write seconds) of an unkilled writer, medians."""
    merges, totals = [], []
    for n in range(runs):
        proc = spawn_writer(path, admin, 1000 + n, "--calibrate")
        go(proc)
        out, _ = proc.communicate(timeout=120)
        fields = dict(f.split("=") for f in out.split() if "=" in f)
        merges.append(float(fields["merge"]))
        totals.append(float(fields["total"]))
    return statistics.median(merges), statistics.median(totals)


def local_backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.kubebastion-backup-*"))


def test_local_kubeconfig_survives_kill_9_at_random_points(tmp_path: Path,
                                                           figures: Figures) -> None:
    rng = random.Random(SEED)
    folder = tmp_path / "kube"
    folder.mkdir(mode=0o700)
    path, admin = folder / "config", tmp_path / "admin.conf"
    admin_text = fake_admin_conf(rng)
    admin.write_text(admin_text)
    path.write_text(someone_elses_kubeconfig(rng))
    path.chmod(0o600)
    merge_s, total_s = calibrate(path, admin)
    required = context_names(path.read_text())
    backup_shas: dict[Path, str] = {}
    tally = Tally()
    leftovers_seen = 0
    started = time.monotonic()
    warm = deque(spawn_writer(path, admin, t) for t in range(min(WARM_WRITERS, TRIALS)))
    for trial in range(TRIALS):
        proc = warm.popleft()
        if trial + WARM_WRITERS < TRIALS:
            warm.append(spawn_writer(path, admin, trial + WARM_WRITERS))
        old = path.read_bytes()
        context, server = trial_entry(trial)
        new = merged_text(bastion_entry(admin_text, context, server), False)(
            old.decode(), str(path)).encode()
        # Even trials anywhere in the write, odd ones after the merge: the file writes
        # (backup, temp file, fsync, rename), which take longer under load than calibrated.
        if trial % 2:
            delay = rng.uniform(merge_s * 0.9, total_s * 1.3)
        else:
            delay = rng.uniform(0, total_s * 1.1)
        go(proc)
        time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=60)
        for backup in local_backups(path):
            if backup not in backup_shas:
                backup_shas[backup] = sha(backup.read_bytes())
        leftovers_seen += len(list(folder.glob(".config.kubebastion-tmp-*")))
        kind = tally.check(trial, delay, path.read_bytes(), old, new,
                           path.stat().st_mode & 0o777, sha(old) in backup_shas.values(),
                           required)
        if kind == "new":
            required |= {context}
    trials_seconds = time.monotonic() - started
    # The lock dies with its holder: an unkilled writer gets through at once, and removes
    # the temp files the killed ones left.
    last = spawn_writer(path, admin, TRIALS)
    go(last)
    unblocked = time.monotonic()
    last.communicate(timeout=60)
    unblocked_s = time.monotonic() - unblocked
    leftovers = list(folder.glob(".config.kubebastion-tmp-*"))
    figures.count(f"local kubeconfig (`merge_local`) kill -9 at random points, {TRIALS} "
                  "trials", tally.kinds["torn"] + len(tally.problems), 0, "bad outcomes",
                  "always the complete old or new file, 0600, backup present, other "
                  "contexts kept",
                  detail=f"{tally.summary()}; write ≈ {total_s * 1000:.0f} ms (merge "
                         f"{merge_s * 1000:.0f} ms); temp files seen after kills: "
                         f"{leftovers_seen}, left at the end: {len(leftovers)}; next writer "
                         f"{unblocked_s:.2f} s; {trials_seconds:.0f} s in all; seed {SEED}")
    assert not tally.problems, "\n".join(tally.problems[:20])
    assert not leftovers and last.returncode == 0
    assert unblocked_s < 10


def test_concurrent_local_writers_serialize(tmp_path: Path, figures: Figures) -> None:
    rng = random.Random(SEED + 1)
    folder = tmp_path / "kube"
    folder.mkdir(mode=0o700)
    path, admin = folder / "config", tmp_path / "admin.conf"
    admin.write_text(fake_admin_conf(rng))
    path.write_text(someone_elses_kubeconfig(rng))
    path.chmod(0o600)
    before = context_names(path.read_text())
    procs = [spawn_writer(path, admin, n) for n in range(CONCURRENT_LOCAL)]
    wanted = {trial_entry(n)[0] for n in range(CONCURRENT_LOCAL)}
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    codes = [proc.wait(timeout=120) for proc in procs]
    seconds = time.monotonic() - started
    after = context_names(path.read_text())
    lost = (before | wanted) - after
    figures.count(f"{CONCURRENT_LOCAL} local writers at once (`merge_local`)", len(lost), 0,
                  "contexts lost", "serialized: every context present at the end",
                  detail=f"exit codes {codes}, {seconds:.2f} s")
    assert codes == [0] * CONCURRENT_LOCAL
    assert not lost


# --- the bastion's kubeconfig (the remote committer) ----------------------------------


def remote_state(state: lab.LabState, target: str, backup: str) -> tuple[str, str, str]:
    """(sha256 of the target, its mode, sha256 of the backup or "none")."""
    out = as_root(state, "bastion", f"sha256sum {target} | cut -d' ' -f1; stat -c %a {target}; "
                  f"if [ -f {backup} ]; then sha256sum {backup} | cut -d' ' -f1; "
                  "else echo none; fi").stdout.split()
    return out[0], out[1], out[2]


def committer(state: lab.LabState, script: str) -> subprocess.Popen[bytes]:
    """The commit script on the bastion, as the user, in a process group of its own."""
    return subprocess.Popen(host_argv(state, "bastion", ["runuser", "-u", state.user, "--",
                                                         "sh", "-c", script]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def test_remote_committer_survives_kill_9_at_random_points(rlab: lab.LabState,
                                                           figures: Figures) -> None:
    rng = random.Random(SEED + 2)
    folder = f"/home/{rlab.user}/.kube-reliability"
    target = f"{folder}/config"
    admin_text = fake_admin_conf(rng)
    text = someone_elses_kubeconfig(rng)
    as_user(rlab, "bastion", f"rm -rf {folder} && mkdir -m 700 {folder} && umask 077 && "
            f"cat > {target}", input=text)
    required = context_names(text)

    def stage(trial: int, content: str) -> str:
        """The upload in place; the script that commits it over ``text``."""
        bundle = f"{folder}/upload-{secrets.token_hex(6)}"
        as_user(rlab, "bastion", f"umask 077 && cat > {bundle}", input=content)
        current = RemoteText(target, text, sha(text))
        return (install_files_command(bundle, [kubeconfig_write(current, content)],
                                      f"kubebastion-backup-trial{trial:03d}",
                                      lock=lock_path(target))
                + "\n" + prune_command(target))

    durations = []
    for n in range(3):  # calibration: unkilled commits of the same content
        script = stage(900 + n, text)
        started = time.monotonic()
        proc = committer(rlab, script)
        assert proc.wait(timeout=60) == 0
        durations.append(time.monotonic() - started)
    commit_s = statistics.median(durations)
    tally = Tally()
    started = time.monotonic()
    for trial in range(TRIALS):
        context, server = trial_entry(trial)
        new = merged_text(bastion_entry(admin_text, context, server), False)(text, target)
        script = stage(trial, new)
        backup = f"{target}.kubebastion-backup-trial{trial:03d}"
        proc = committer(rlab, script)
        delay = rng.uniform(0, commit_s * 1.1)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole committer: shell, mv, sync
        proc.wait(timeout=60)
        now_sha, mode, backup_sha = remote_state(rlab, target, backup)
        now = (text if now_sha == sha(text) else new if now_sha == sha(new) else "").encode()
        if not now:
            now = b"<torn>"
        kind = tally.check(trial, delay, now, text.encode(), new.encode(), int(mode, 8),
                           backup_sha == sha(text), required)
        if kind == "new":
            text, required = new, required | {context}
    trials_seconds = time.monotonic() - started
    left = as_root(rlab, "bastion", f"ls -a {folder}").stdout.split()
    stages = [name for name in left if name.startswith(".config.kubebastion-")]
    figures.count(f"bastion kubeconfig (remote committer) kill -9 at random points, {TRIALS} "
                  "trials", tally.kinds["torn"] + len(tally.problems), 0, "bad outcomes",
                  "always the complete old or new file, 0600, backup present, other "
                  "contexts kept",
                  detail=f"{tally.summary()}; commit ≈ {commit_s * 1000:.0f} ms; staged "
                         f"files left by killed commits: {len(stages)} (removed after 10 "
                         f"min by the next commit); {trials_seconds:.0f} s in all; seed "
                         f"{SEED + 2}")
    assert not tally.problems, "\n".join(tally.problems[:20])


# --- invoke fetch-kubeconfig, killed through its test hook ----------------------------


def bastion_config(state: lab.LabState) -> str:
    return as_root(state, "bastion", f"cat /home/{state.user}/.kube/config").stdout


def paused_committer(state: lab.LabState, proc: subprocess.Popen[str],
                     timeout: float = 90) -> int:
    """The pid of the committer sleeping in the test hook's pause on the bastion (fails
    with the run's own output if ``proc`` ended before getting there)."""
    namespace = fresh(state).bastion.namespace
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"fetch-kubeconfig ended (exit {proc.returncode}) before "
                                 f"its commit: {(out + err).strip()[-500:]}")
        pids = lab.pids_running(namespace, b"config.kubebastion.lock",
                                f"sleep {PAUSE:g}".encode())
        if pids:
            return pids[0]
        time.sleep(0.1)
    raise AssertionError("the committer never reached its pause")


def backups_on_bastion(state: lab.LabState) -> list[str]:
    return as_root(state, "bastion", f"ls /home/{state.user}/.kube | grep kubebastion-backup "
                   "|| true").stdout.split()


def test_fetch_kubeconfig_killed_on_either_side_leaves_a_complete_kubeconfig(
        rlab: lab.LabState, deployed: Path, figures: Figures) -> None:
    first = invoke("fetch-kubeconfig", "--config", deployed)
    assert first.code == 0, first.output[-2000:]
    hook = {PAUSE_ENV: f"{PAUSE:g}"}

    # The bastion side dies: the committer is killed in its pause, before the rename.
    before = bastion_config(rlab)
    started = time.monotonic()
    proc = spawn_invoke("fetch-kubeconfig", "--config", deployed, "--context", "killed-remote",
                        "--no-switch", env=hook)
    os.kill(paused_committer(rlab, proc), signal.SIGKILL)
    remote_killed = finish(proc, started, timeout=120)
    after_remote = bastion_config(rlab)
    remote_ok = remote_killed.code == 1 and after_remote == before
    figures.record("`fetch-kubeconfig` with the bastion's committer killed before its rename",
                   "exit 1, the old file byte for byte", f"exit {remote_killed.code}, "
                   f"file {'unchanged' if after_remote == before else 'CHANGED'}, "
                   f"{remote_killed.seconds:.1f} s", remote_ok,
                   detail=remote_killed.stderr.strip().splitlines()[-1]
                   if remote_killed.stderr.strip() else "")
    assert remote_ok, remote_killed.output[-2000:]
    assert "bastion" in remote_killed.output and "commit" in remote_killed.output

    # The operator side dies: kill -9 of invoke itself while the bastion pauses.
    before = bastion_config(rlab)
    backups = set(backups_on_bastion(rlab))
    proc = spawn_invoke("fetch-kubeconfig", "--config", deployed, "--context", "killed-local",
                        "--no-switch", env=hook)
    pid = paused_committer(rlab, proc)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + PAUSE + 30
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    after = bastion_config(rlab)
    new_backups = set(backups_on_bastion(rlab)) - backups
    complete = after == before or (
        "killed-local" in context_names(after) and context_names(before) <= context_names(after)
        and bool(new_backups))
    mode = as_root(rlab, "bastion", f"stat -c %a /home/{rlab.user}/.kube/config").stdout.strip()
    rerun = invoke("fetch-kubeconfig", "--config", deployed, "--context", "killed-local",
                   "--no-switch")
    kind = "old" if after == before else "new" if complete else "torn"
    figures.record("`fetch-kubeconfig` killed -9 on the operator side during the commit",
                   "the old or the new complete file (0600, backup), and the next run works",
                   f"{kind} file, mode {mode}; next run exit {rerun.code}",
                   complete and mode == "600" and rerun.code == 0)
    assert complete and mode == "600", after[-2000:]
    assert rerun.code == 0, rerun.output[-2000:]
    assert {"killed-local", "lab"} <= context_names(bastion_config(rlab))


def test_two_concurrent_fetch_kubeconfig_runs_serialize(rlab: lab.LabState, deployed: Path,
                                                        figures: Figures) -> None:
    before = context_names(bastion_config(rlab))
    hook = {PAUSE_ENV: "2"}  # both runs are inside the commit window at once
    started = time.monotonic()
    procs = [spawn_invoke("fetch-kubeconfig", "--config", deployed, "--context", name,
                          "--no-switch", env=hook) for name in ("racer-a", "racer-b")]
    runs = [finish(proc, started, timeout=300) for proc in procs]
    seconds = time.monotonic() - started
    after = context_names(bastion_config(rlab))
    lost = (before | {"racer-a", "racer-b"}) - after
    codes = [r.code for r in runs]
    figures.count("two concurrent `fetch-kubeconfig` runs (2 s pause in the commit)",
                  len(lost), 0, "contexts lost", "both exit 0, both contexts and every "
                  "earlier one present", detail=f"exit codes {codes}, {seconds:.1f} s")
    assert codes == [0, 0], "\n".join(r.output[-1500:] for r in runs)
    assert not lost


REPEATS = 25


def test_fetch_kubeconfig_again_and_again_on_a_healthy_lab(rlab: lab.LabState, deployed: Path,
                                                           figures: Figures) -> None:
    """Nothing is wrong with the lab: every run must succeed (a spurious failure is a
    fault too, and an intermittent one only shows over many runs)."""
    failures = []
    started = time.monotonic()
    for n in range(REPEATS):
        run = invoke("fetch-kubeconfig", "--config", deployed)
        if run.code != 0:
            last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
            failures.append(f"run {n + 1} (exit {run.code}, {run.seconds:.1f} s): {last}")
    seconds = time.monotonic() - started
    figures.count(f"`fetch-kubeconfig` {REPEATS} times in a row on a healthy lab",
                  len(failures), 0, "failed runs", "every run exits 0",
                  detail=f"{seconds:.0f} s in all; " + ("; ".join(failures[:3]) or "-"))
    assert not failures, failures
