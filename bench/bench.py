"""The benchmark driver behind ``bench/run``: kubebastion against pyinfra, Ansible and plain
OpenSSH on the same lab, in one run.

Runs as root with the repo's .venv Python (it drives the lab package). For each lab size N
(nodes: bastion + 1 control plane + N-1 workers; every workload targets all N+1 inventory
hosts, bastion included, like ``invoke check``) it runs workloads A, B and C with each tool
as a separate process and records:

- wall time (``time.perf_counter`` around the process),
- CPU time of the tool's process tree, two ways: ``getrusage(RUSAGE_CHILDREN)`` around the
  subprocess (what was waited for) and a cpuacct cgroup holding the whole tree (also counts
  daemonized ssh ControlPersist masters, which RUSAGE_CHILDREN misses),
- SSH logins per host ("Accepted publickey" lines added to each host's sshd.log).

Each phase (a lab size and a tool, or Ansible and one workload) builds the lab from nothing
(about a second) under the prefix's session lock and takes it down at the end, so no phase
holds a lab for long.
Raw samples go to bench/work/results.json; bench/results.md and bench/wall_vs_n.png are
generated from them (``--report-only`` regenerates them without a lab).
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import deploy_overhead  # noqa: E402
import venv_forks  # noqa: E402
from samples import Sample, Series, series_from_json, series_json  # noqa: E402
from workloads import (  # noqa: E402
    CHECK_BATCH,
    CHECK_COMMANDS,
    FIVE_COMMANDS,
    SECRET_FILE,
    SECRET_SIZE,
)

import lab  # noqa: E402
import lab.topology  # noqa: E402
from kubebastion.kubespray.settings import default_wheelhouse  # noqa: E402
from lab.lock import held, session_lock  # noqa: E402

VENVS = BENCH / ".venvs"
WORK = BENCH / "work"
RESULTS_JSON = WORK / "results.json"
RESULTS_MD = BENCH / "results.md"
PLOT_PNG = BENCH / "wall_vs_n.png"
KB_PYTHON = REPO / ".venv" / "bin" / "python"
INVOKE = REPO / ".venv" / "bin" / "invoke"
CGROUP_ROOT = Path("/sys/fs/cgroup/cpuacct")
#: kubespray stand-in's venv is built on the bastion from wheels cached here (as in tests/lab).
WHEELHOUSE = default_wheelhouse()
STAND_IN = REPO / "lab" / "kubespray"

#: The bench's lab prefix (``--prefix``, or $KUBEBASTION_BENCH_PREFIX; default kbb): its
#: namespaces, user ``<prefix>lab``, state in lab/state/bench-<prefix>/ and session lock,
#: so a bench can run beside test sessions and other benches that use other prefixes.
PREFIX_ENV = "KUBEBASTION_BENCH_PREFIX"
PREFIX = os.environ.get(PREFIX_ENV) or "kbb"
USER = f"{PREFIX}lab"
STATE_DIR = REPO / "lab" / "state" / f"bench-{PREFIX}"


def use_prefix(prefix: str) -> None:
    """Run every lab phase of this process under ``prefix`` (see PREFIX)."""
    global PREFIX, USER, STATE_DIR  # one setting, read by every phase
    lab.topology.validate_prefix(prefix)
    PREFIX, USER, STATE_DIR = prefix, f"{prefix}lab", REPO / "lab" / "state" / f"bench-{prefix}"


TOOLS = ("kubebastion", "floor", "kb-check", "pyinfra", "ansible", "openssh")
#: Workload A only: the raw-Paramiko floor (bench/floor_workload.py) and `invoke check`.
A_ONLY_TOOLS = ("floor", "kb-check")
#: Issue 2's first benchmark: Ansible ad-hoc on workload A (one module call per host).
ADHOC_TOOLS = ("ansible-raw", "ansible-command")
TOOL_LABELS = {
    "kubebastion": "kubebastion (Nornir + Fabric)",
    "floor": "raw Paramiko threads (floor)",
    "kb-check": "invoke check",
    "pyinfra": "pyinfra",
    "ansible": "Ansible playbook",
    "ansible-raw": "Ansible ad-hoc -m raw",
    "ansible-command": "Ansible ad-hoc -m command",
    "openssh": "OpenSSH xargs -P (floor)",
}


# --- measuring ----------------------------------------------------------------------------

def login_counts(state: lab.LabState) -> dict[str, int]:
    counts = {}
    for host in state.hosts:
        try:
            counts[host.name] = host.sshd_log.read_text(errors="replace").count(
                "Accepted publickey")
        except FileNotFoundError:
            counts[host.name] = 0
    return counts


@contextmanager
def cpu_cgroup() -> Iterator[Path | None]:
    """A fresh cpuacct cgroup (v1) for one measured process tree, or None if unavailable."""
    if not (CGROUP_ROOT / "cgroup.procs").exists():
        yield None
        return
    path = CGROUP_ROOT / f"{PREFIX}-bench-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        path.mkdir()
    except OSError:
        yield None
        return
    try:
        yield path
    finally:
        for _ in range(100):
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)


DRIVER_CGROUP: list[Path] = []  # the driver's own cgroup, once joined


def join_driver_cgroup() -> None:
    """Put the driver, and so every lab sshd it starts and their sessions, into its own
    cpuacct cgroup: each sample can then tell the lab hosts' CPU from the tool's and from
    whatever else the machine was doing (other people's tests)."""
    if not (CGROUP_ROOT / "cgroup.procs").exists():
        return
    for pattern in (f"{PREFIX}-bench-*", f"{PREFIX}-driver-*"):  # empty leftovers of an
        for old in CGROUP_ROOT.glob(pattern):  # interrupted run (rmdir spares busy ones)
            with suppress(OSError):
                old.rmdir()
    path = CGROUP_ROOT / f"{PREFIX}-driver-{os.getpid()}"
    try:
        path.mkdir(exist_ok=True)
        (path / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        return
    DRIVER_CGROUP.append(path)

    def leave() -> None:
        with suppress(OSError):
            (CGROUP_ROOT / "cgroup.procs").write_text(str(os.getpid()))
            path.rmdir()

    atexit.register(leave)


def _cpuacct(path: Path | None) -> float:
    if path is None:
        return 0.0
    return int((path / "cpuacct.usage").read_text()) / 1e9


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores, /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _cgroup_empty(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (path / "cgroup.procs").read_text().strip():
            return True
        time.sleep(0.02)
    return False


def measure(argv: list[str], *, env: dict[str, str], cwd: Path, log: Path,
            state: lab.LabState, timeout: float,
            after: Callable[[], None] | None = None) -> Sample:
    """Run one tool invocation; ``after`` tears down what the tool left running (ssh
    ControlPersist masters) once the wall clock has stopped."""
    before = login_counts(state)
    log.parent.mkdir(parents=True, exist_ok=True)
    with cpu_cgroup() as cg, log.open("w") as out:
        def enter_cgroup() -> None:
            if cg is not None:
                (cg / "cgroup.procs").write_text(str(os.getpid()))

        driver_cg = DRIVER_CGROUP[0] if DRIVER_CGROUP else None
        lab0, busy0 = _cpuacct(driver_cg), machine_busy()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=enter_cgroup)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:  # wait4, not wait: the rusage of this process alone (its peak memory)
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        rc = proc.returncode = os.waitstatus_to_exitcode(status)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        lab_cpu = _cpuacct(driver_cg) - lab0 if driver_cg is not None else None
        tool_at_stop = _cpuacct(cg)
        foreign = None
        if lab_cpu is not None and cg is not None:
            foreign = max(0.0, machine_busy() - busy0 - lab_cpu - tool_at_stop)
        if after is not None:
            after()
        cpu_tree = None
        if cg is not None and _cgroup_empty(cg, 15.0):
            cpu_tree = int((cg / "cpuacct.usage").read_text()) / 1e9
        elif cg is not None:  # something of the tool's is still running: do not guess
            rc = rc or -1
            left = (cg / "cgroup.procs").read_text().split()
            out.write(f"\n[bench] processes left in {cg}, terminated: {left}\n")
            for pid in left:  # started by this measurement (they are in its cgroup)
                with suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)
            _cgroup_empty(cg, 5.0)
    time.sleep(0.05)  # sshd writes its log line before the session, but be safe
    after_counts = login_counts(state)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    logins = {h: after_counts[h] - before.get(h, 0) for h in after_counts}
    return Sample(wall, cpu, cpu_tree, rc, logins, lab_cpu, foreign, usage.ru_maxrss)


# --- the tools' files ---------------------------------------------------------------------

def bench_ssh_config(state: lab.LabState, path: Path) -> Path:
    """The lab's ssh_config plus connection sharing. ControlPath comes from the environment
    (``KBB_CP_DIR``), a fresh directory per run, so no run reuses another's masters."""
    # "Port 22" is the default anyway; dropped because pyinfra 3.10 passes it on to its
    # ProxyJump hop as the string "22", so Paramiko looks the bastion up as "[addr]:22".
    lines = [line for line in state.ssh_config.read_text().splitlines()
             if line.strip() != "Port 22"]
    text = "\n".join(lines).rstrip("\n") + "\n"
    text += ("    ControlMaster auto\n"
             "    ControlPath ${KBB_CP_DIR}/%C\n"
             "    ControlPersist 60\n")
    path.write_text(text)
    return path


def exit_masters(cp_dir: Path) -> None:
    """Ask every ssh master under ``cp_dir`` to exit (processes this run started)."""
    for sock in sorted(cp_dir.glob("*")):
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                       capture_output=True, timeout=10, check=False)


@dataclass
class Setup:
    """Per-lab files for every tool."""

    state: lab.LabState
    dir: Path
    ssh_config: Path
    host_names: list[str]


def write_pyinfra_files(setup: Setup) -> None:
    d = setup.dir / "pyinfra"
    d.mkdir(parents=True, exist_ok=True)
    data = {"ssh_config_file": str(setup.ssh_config),
            "ssh_key": str(setup.state.private_key),
            "ssh_known_hosts_file": str(setup.state.known_hosts),
            "ssh_user": setup.state.user}
    hosts = [(name, data) for name in setup.host_names]
    (d / "inventory.py").write_text(f"hosts = {hosts!r}\n")
    ops = ["from pyinfra.operations import server", ""]
    ops += [f"server.shell(name={c!r}, commands=[{c!r}])" for c in FIVE_COMMANDS]
    (d / "five.py").write_text("\n".join(ops) + "\n")


def write_ansible_files(setup: Setup) -> None:
    d = setup.dir / "ansible"
    d.mkdir(parents=True, exist_ok=True)
    forks = len(setup.host_names)
    (d / "ansible.cfg").write_text(
        "[defaults]\n"
        f"inventory = {d / 'hosts.ini'}\n"
        f"forks = {forks}\n"
        "host_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\n"
        "gathering = explicit\n"
        "retry_files_enabled = False\n"
        "nocolor = True\n"
        "deprecation_warnings = False\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = -F {setup.ssh_config} -o ControlMaster=auto -o ControlPersist=60s\n"
    )
    (d / "hosts.ini").write_text("[all]\n" + "\n".join(setup.host_names) + "\n")

    def playbook(tasks: list[dict[str, Any]], become: bool = False) -> str:
        play: dict[str, Any] = {"name": "bench", "hosts": "all", "gather_facts": False}
        if become:
            play["become"] = True
        play["tasks"] = tasks
        return yaml.safe_dump([play], sort_keys=False)

    (d / "A.yml").write_text(playbook(
        [{"name": c, "ansible.builtin.command": c, "changed_when": False}
         for c in CHECK_COMMANDS]))
    (d / "B.yml").write_text(playbook(
        [{"name": "read", "ansible.builtin.command": f"cat {SECRET_FILE}",
          "changed_when": False}], become=True))
    (d / "C.yml").write_text(playbook(
        [{"name": c, "ansible.builtin.command": c, "changed_when": False}
         for c in FIVE_COMMANDS]))


def write_openssh_files(setup: Setup) -> None:
    """One sh script per workload: a bastion master first (every ProxyJump multiplexes over
    it), then ``xargs -P <hosts>``, then the masters are told to exit."""
    d = setup.dir / "openssh"
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.txt").write_text("\n".join(setup.host_names) + "\n")
    cfg = shlex.quote(str(setup.ssh_config))
    per_host = {
        "A": f"ssh -F {cfg} -o ControlMaster=no \"$1\" {shlex.quote(CHECK_BATCH)}",
        "B": f"ssh -F {cfg} -o ControlMaster=no \"$1\" "
             f"{shlex.quote('sudo -n cat ' + SECRET_FILE)}",
        "C": " && ".join(f"ssh -F {cfg} \"$1\" {shlex.quote(c)}" for c in FIVE_COMMANDS),
    }
    for workload, job in per_host.items():
        script = "\n".join([
            "#!/bin/sh",
            "set -e",
            f"ssh -F {cfg} -o ControlMaster=yes -o ControlPersist=60 -f -N bastion",
            "rc=0",
            f"xargs -P {len(setup.host_names)} -I HOST sh -c {shlex.quote(job + ' >/dev/null')}"
            f" _ HOST < {shlex.quote(str(d / 'hosts.txt'))} || rc=$?",
            'for sock in "$KBB_CP_DIR"/*; do ssh -o ControlPath="$sock" -O exit x '
            "2>/dev/null || true; done",
            "exit $rc",
            "",
        ])
        path = d / f"{workload}.sh"
        path.write_text(script)
        path.chmod(0o755)


def write_setup(state: lab.LabState, n: int, tag: str) -> Setup:
    d = WORK / f"n{n}-{tag}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    setup = Setup(state=state, dir=d, ssh_config=d / "ssh_config",
                  host_names=[h.name for h in state.hosts])
    bench_ssh_config(state, setup.ssh_config)
    write_pyinfra_files(setup)
    write_ansible_files(setup)
    write_openssh_files(setup)
    write_floor_files(setup)
    return setup


def write_floor_files(setup: Setup) -> None:
    """What bench/floor_workload.py needs: the lab's user, key, known_hosts, addresses."""
    state = setup.state
    spec = {"user": state.user, "key": str(state.private_key),
            "known_hosts": str(state.known_hosts), "bastion": state.bastion.ssh_address,
            "nodes": [node.private_address for node in state.nodes]}
    (setup.dir / "floor.json").write_text(json.dumps(spec, indent=1))


def make_secret_files(state: lab.LabState) -> None:
    """Workload B's file on every host: 5 KB, root:root 0600 in /root (0700)."""
    body = ("x" * 63 + "\n") * (SECRET_SIZE // 64)
    for host in state.hosts:
        lab.host_exec(state, host.name,
                      ["sh", "-c", f"umask 077; cat > {SECRET_FILE}; chmod 600 {SECRET_FILE}"],
                      input=body, check=True)


def tool_command(tool: str, workload: str, setup: Setup) -> tuple[list[str], Path] | None:
    """argv and cwd of one tool on one workload (None: the tool has no such row)."""
    d = setup.dir
    if tool == "kubebastion":
        return ([str(KB_PYTHON), str(BENCH / "kb_workload.py"), "--config",
                 str(setup.state.nornir_config), "--workload", workload], REPO)
    if tool == "floor":
        if workload != "A":
            return None
        return [str(KB_PYTHON), str(BENCH / "floor_workload.py"), str(d / "floor.json")], BENCH
    if tool == "kb-check":
        if workload != "A":
            return None
        return ([str(INVOKE), "check", "--json", "--config", str(setup.state.nornir_config)],
                REPO)
    if tool == "pyinfra":
        exe = str(VENVS / "pyinfra" / "bin" / "pyinfra")
        inv = str(d / "pyinfra" / "inventory.py")
        if workload == "A":
            return [exe, "-y", inv, "exec", "--", CHECK_BATCH], d / "pyinfra"
        if workload == "B":
            return [exe, "-y", "--sudo", inv, "exec", "--", f"cat {SECRET_FILE}"], d / "pyinfra"
        return [exe, "-y", inv, str(d / "pyinfra" / "five.py")], d / "pyinfra"
    if tool == "ansible":
        exe = str(VENVS / "ansible" / "bin" / "ansible-playbook")
        return [exe, str(d / "ansible" / f"{workload}.yml")], d / "ansible"
    if tool in ADHOC_TOOLS:
        if workload != "A":
            return None
        exe = str(VENVS / "ansible" / "bin" / "ansible")
        if tool == "ansible-raw":
            return [exe, "all", "-m", "raw", "-a", CHECK_BATCH], d / "ansible"
        return ([exe, "all", "-m", "command", "-a", f"sh -c {shlex.quote(CHECK_BATCH)}"],
                d / "ansible")
    if tool == "openssh":
        return ["/bin/sh", str(d / "openssh" / f"{workload}.sh")], d / "openssh"
    raise ValueError(tool)


def run_interleaved(tools: list[str], workload: str, setup: Setup, n: int,
                    reps: dict[str, int], note: dict[str, str]) -> list[Series]:
    """Run the tools on one workload, repetition by repetition (tool A, tool B, ..., then
    again), so slow drifts of the shared machine's load spread over every tool alike."""
    series: dict[str, Series] = {}
    commands: dict[str, tuple[list[str], Path]] = {}
    for tool in tools:
        command = tool_command(tool, workload, setup)
        if command is not None:
            commands[tool] = command
            series[tool] = Series(tool, workload, n, len(setup.host_names),
                                  note=note.get(tool, ""))
    for rep in range(max((reps[t] for t in commands), default=0)):
        for tool, (argv, cwd) in commands.items():
            if rep >= reps[tool]:
                continue
            sample = run_once(argv, cwd, setup, setup.dir / "logs" / f"{tool}-{workload}-{rep}.log")
            series[tool].samples.append(sample)
            status = "ok" if sample.rc == 0 else f"FAILED rc={sample.rc}"
            print(f"  N={n} {workload} {tool:16} rep {rep + 1}/{reps[tool]}: "
                  f"{sample.wall:6.2f} s wall, cpu {sample.cpu_rusage:.2f}/"
                  f"{_fmt(sample.cpu_tree)} s, hosts {_fmt(sample.hosts_cpu)} s, "
                  f"other {_fmt(sample.foreign_cpu)} s, logins {_login_text(sample)}, "
                  f"peak {(sample.peak_rss_kb or 0) / 1024:.0f} MB {status}",
                  flush=True)
    return list(series.values())


def run_once(argv: list[str], cwd: Path, setup: Setup, log: Path) -> Sample:
    """One measured invocation with its own ssh ControlPath directory (no run reuses
    another's connections); whatever masters it left are told to exit afterwards."""
    cp_dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-cp-"))
    env = {**os.environ, "KBB_CP_DIR": str(cp_dir),
           "ANSIBLE_CONFIG": str(setup.dir / "ansible" / "ansible.cfg"),
           "ANSIBLE_LOCAL_TEMP": str(setup.dir / "ansible" / "tmp"),
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir)}
    try:
        return measure(argv, env=env, cwd=cwd, log=log, state=setup.state, timeout=600,
                       after=partial(exit_masters, cp_dir))
    finally:
        shutil.rmtree(cp_dir, ignore_errors=True)


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _login_text(sample: Sample) -> str:
    values = sorted(set(sample.logins.values()))
    bastion = sample.logins.get("bastion", 0)
    nodes = sorted({v for h, v in sample.logins.items() if h != "bastion"})
    if values == [bastion]:
        return str(bastion)
    return f"nodes {_span(nodes)}, bastion {bastion}"


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


# --- lab phases ---------------------------------------------------------------------------

@contextmanager
def lab_phase(what: str, lock_wait: float) -> Iterator[None]:
    """One lab phase: our lab (``PREFIX``) built from nothing under its session lock (the
    one a test session of that prefix would take) and always taken down at the end."""
    lock = session_lock(PREFIX)
    print(f"[{what}] waiting for {lock} ...", flush=True)
    t0 = time.monotonic()
    with held(lock, timeout=lock_wait):
        waited = time.monotonic() - t0
        if waited > 1:
            print(f"[{what}] lock taken after {waited:.0f} s", flush=True)
        lab.down(PREFIX, USER, STATE_DIR)
        try:
            yield
        finally:
            lab.down(PREFIX, USER, STATE_DIR)


def timed_up(control_planes: int, workers: int) -> tuple[lab.LabState, float]:
    t0 = time.perf_counter()
    state = lab.up(name_prefix=PREFIX, control_planes=control_planes, workers=workers,
                   user=USER, state_dir=STATE_DIR)
    return state, time.perf_counter() - t0


def kubespray_config(state: lab.LabState, folder: Path, **settings: Any) -> Path:
    """The lab inventory plus kubespray settings (upload the stand-in, venv from the cached
    wheelhouse), as tests/lab/test_kubespray.py writes it; ``settings``: more of them."""
    inventory = folder / "inventory"
    inventory.mkdir(parents=True, exist_ok=True)
    for name in ("hosts.yaml", "groups.yaml"):
        (inventory / name).write_text((state.inventory_dir / name).read_text())
    defaults = yaml.safe_load((state.inventory_dir / "defaults.yaml").read_text())
    defaults["data"]["kubespray"] = {"source": str(STAND_IN), "wheelhouse": str(WHEELHOUSE),
                                     "ready_timeout": 60, **settings}
    (inventory / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    return lab.config_beside(state, folder)


def fetch_kubeconfig_phase(state: lab.LabState, reps: int, results: dict[str, Any]) -> None:
    folder = WORK / "fetch"
    shutil.rmtree(folder, ignore_errors=True)
    config = kubespray_config(state, folder)
    env = {**os.environ, "KUBEBASTION_SUDO_PASSWORD": "kbb-" + secrets.token_hex(6)}
    t0 = time.perf_counter()
    deployed = subprocess.run([str(INVOKE), "kubespray", "--config", str(config)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=900, check=False)
    results["kubespray_seconds"] = time.perf_counter() - t0
    (folder / "kubespray.log").write_text(deployed.stdout + deployed.stderr)
    if deployed.returncode != 0:
        results["fetch_kubeconfig"] = {
            "todo": f"`invoke kubespray` failed on the lab (exit {deployed.returncode}, "
                    f"log bench/work/fetch/kubespray.log): {deployed.stderr.strip()[-300:]}"}
        print(f"  invoke kubespray failed: {deployed.stderr[-500:]}", flush=True)
        return
    print(f"  invoke kubespray: {results['kubespray_seconds']:.1f} s", flush=True)
    samples: list[dict[str, Any]] = []
    for rep in range(reps):
        log = folder / f"fetch-{rep}.log"
        sample = measure([str(INVOKE), "fetch-kubeconfig", "--config", str(config)], env=env,
                         cwd=REPO, log=log, state=state, timeout=300)
        entry = asdict(sample)
        if sample.rc != 0:
            entry["error"] = _first_error(log.read_text(errors="replace"))
        samples.append(entry)
        print(f"  fetch-kubeconfig rep {rep + 1}/{reps}: {sample.wall:.2f} s rc={sample.rc} "
              f"{entry.get('error', '')}", flush=True)
    good = [s for s in samples if s["rc"] == 0]
    results["fetch_kubeconfig"] = {"samples": samples, "ok": len(good) * 2 > len(samples)}
    if not results["fetch_kubeconfig"]["ok"]:
        results["fetch_kubeconfig"]["todo"] = (
            "`invoke fetch-kubeconfig` failed in most runs on the lab (logs "
            "bench/work/fetch/fetch-*.log)")
    results["fetch_kubeconfig"]["profile"] = profile_fetch(config, env, folder)


def deploy_overhead_phase(workers: int, reps: int, results: dict[str, Any]) -> None:
    """``invoke deploy`` on a lab built from nothing, then again (nothing to do), ``reps``
    times; see bench/deploy_overhead.py."""
    entry: dict[str, list[dict[str, Any]]] = {kind: [] for kind, _ in deploy_overhead.KINDS}
    results.setdefault("deploy_overhead", {})[str(workers)] = entry
    folder = WORK / f"deploy-1+{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "KUBEBASTION_SUDO_PASSWORD": "kbb-" + secrets.token_hex(6)}
    for rep in range(reps):
        lab.down(PREFIX, USER, STATE_DIR)
        state, seconds = timed_up(1, workers)
        results["lab_up"].setdefault(f"1+{workers}", []).append(seconds)
        config = kubespray_config(state, folder / f"rep-{rep}")
        for kind, extra in deploy_overhead.KINDS:
            sample = deploy_overhead.deploy_once(INVOKE, config, env, REPO,
                                                 folder / f"rep-{rep}" / f"{kind}.log", extra)
            entry[kind].append(sample)
            print(f"  deploy 1+{workers} {kind} {rep + 1}/{reps}: {sample['wall']:.1f} s, "
                  f"playbook {sample.get('playbook', 0):.1f} s, overhead "
                  f"{sample.get('overhead', 0):.1f} s rc={sample['rc']} "
                  f"{sample.get('error', '')}", flush=True)


@contextmanager
def state_on_tmpfs(wanted: bool) -> Iterator[None]:
    """With ``wanted``: the prefix's lab state (every lab host's /home, /tmp, /etc ...) on
    a tmpfs for the phase, unmounted after its lab is taken down. On this machine's disk,
    creating 20,000 small files costs 0.4 s to 15 s of kernel time, worst right after
    large deletions (each lab.down deletes a venv); a venv build is mostly creating files,
    so on the tmpfs the installers are measured without that noise."""
    if not wanted:
        yield
        return
    lab.down(PREFIX, USER, STATE_DIR)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g,mode=0755",
                    f"{PREFIX}-bench-state", str(STATE_DIR)], check=True)
    try:
        yield
    finally:
        lab.down(PREFIX, USER, STATE_DIR)
        subprocess.run(["umount", str(STATE_DIR)], check=True)


def venv_installers_phase(reps: int, results: dict[str, Any], tmpfs: bool = False) -> None:
    """Issue 16 item 1: a fresh deploy of 1+3 with uv, then with pip (``uv: false``),
    ``reps`` times, each on a lab built from nothing; see bench/venv_forks.py. ``tmpfs``:
    the labs' files on a tmpfs (``state_on_tmpfs``), kept apart in the results."""
    entry: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in venv_forks.INSTALLERS}
    results[venv_forks.VENV_KEYS[tmpfs]] = entry
    folder = WORK / ("venv-installers-tmpfs" if tmpfs else "venv-installers")
    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "KUBEBASTION_SUDO_PASSWORD": "kbb-" + secrets.token_hex(6)}
    for rep in range(reps):
        order = venv_forks.INSTALLERS if rep % 2 == 0 else venv_forks.INSTALLERS[::-1]
        for name, uv in order:
            lab.down(PREFIX, USER, STATE_DIR)
            state, seconds = timed_up(1, 3)
            results["lab_up"].setdefault("1+3", []).append(seconds)
            run_dir = folder / f"{name}-{rep}"
            config = kubespray_config(state, run_dir, uv=uv)
            log = run_dir / "fresh.log"
            sample = deploy_overhead.deploy_once(INVOKE, config, env, REPO, log)
            with suppress(ValueError, IndexError):
                report = json.loads(log.read_text().split("\n--- stderr\n")[0])
                sample["venv_detail"] = venv_forks.venv_row_detail(report)
            used = venv_forks.installer_of(sample.get("venv_detail", ""))
            sample["ok"] = bool(sample.get("ok")) and sample["rc"] == 0 and used == name
            if sample["rc"] == 0 and used != name:
                sample["error"] = f"the venv was built with {used or 'nothing'}, not {name}"
            entry[name].append(sample)
            print(f"  venv {name} {rep + 1}/{reps}: {sample['wall']:.1f} s, playbook "
                  f"{sample.get('playbook', 0):.1f} s, overhead {sample.get('overhead', 0):.1f}"
                  f" s rc={sample['rc']} {sample.get('error', '')}", flush=True)


def forks_phase(reps: int, workers: int, results: dict[str, Any]) -> None:
    """Issue 16 item 2: on 1+``workers`` with the stand-in's remote latency, the playbook
    with the chosen forks and with forks = 5, taking turns, after one warm-up run (not
    counted) that puts kubespray and its venv on the fresh bastion and plays the first
    install, so every counted run is the same rerun; the bastion's memory peak sampled
    during the chosen ones. See bench/venv_forks.py."""
    folder = WORK / "forks"
    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "KUBEBASTION_SUDO_PASSWORD": "kbb-" + secrets.token_hex(6)}
    state, seconds = timed_up(1, workers)
    results["lab_up"].setdefault(f"1+{workers}", []).append(seconds)
    latency = [f"lab_task_latency={venv_forks.LATENCY}"]
    configs = {"chosen": kubespray_config(state, folder / "chosen", extra_vars=latency),
               "five": kubespray_config(state, folder / "five", extra_vars=latency, forks=5)}
    entry: dict[str, Any] = {"latency": venv_forks.LATENCY, "workers": workers,
                             "chosen": [], "five": []}
    results["forks"] = entry
    bastion_ns = state.bastion.namespace
    peak = {"pss_kb": 0, "rss_kb": 0, "processes": 0}
    warmup = venv_forks.kubespray_once(INVOKE, configs["chosen"], env, REPO,
                                       folder / "warmup.log")
    entry["warmup"] = warmup
    print(f"  kubespray warm-up (not counted): playbook {warmup.get('playbook') or 0:.1f} s, "
          f"wall {warmup['wall']:.1f} s rc={warmup['rc']} {warmup.get('error', '')}",
          flush=True)
    for rep in range(reps):
        for kind in (("chosen", "five") if rep % 2 == 0 else ("five", "chosen")):
            log = folder / f"{kind}-{rep}.log"
            with venv_forks.MemoryPeak(lambda: lab.pids_running(bastion_ns, b"ansible")) as mem:
                sample = venv_forks.kubespray_once(INVOKE, configs[kind], env, REPO, log)
            if kind == "chosen" and mem.pss_kb > peak["pss_kb"]:
                peak = {"pss_kb": mem.pss_kb, "rss_kb": mem.rss_kb, "processes": mem.processes}
            sample["memory"] = {"pss_kb": mem.pss_kb, "rss_kb": mem.rss_kb,
                                "processes": mem.processes}
            entry[kind].append(sample)
            forks = (sample.get("forks") or {}).get("value", "?")
            print(f"  kubespray forks={forks} ({kind}) {rep + 1}/{reps}: playbook "
                  f"{sample.get('playbook') or 0:.1f} s, wall {sample['wall']:.1f} s, memory "
                  f"peak {mem.pss_kb / 1024:.0f} MB PSS rc={sample['rc']} "
                  f"{sample.get('error', '')}", flush=True)
    entry["memory"] = peak


def _first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "failed on" in line:
            return " ".join(lines[i + 1:i + 3])[:300]
    return (lines[-1] if lines else "")[:300]


def profile_fetch(config: Path, env: dict[str, str], folder: Path) -> dict[str, Any]:
    """One ``invoke fetch-kubeconfig`` under cProfile (main thread, wall clock): where its
    second goes, by kubebastion function and by remote command."""
    import pstats

    out = folder / "fetch.prof"
    t0 = time.perf_counter()
    proc = subprocess.run([str(KB_PYTHON), "-m", "cProfile", "-o", str(out), str(INVOKE),
                           "fetch-kubeconfig", "--config", str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        return {"error": _first_error(proc.stdout + proc.stderr)}
    raw = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    rows: list[tuple[float, int, str]] = []
    wanted = ("kubebastion/", "tasks.py", "invoke/program.py")
    for (file, _line, func), (_cc, calls, _tt, cum, _callers) in raw.items():
        if any(w in file for w in wanted) or func in ("open_session", "connect"):
            short = "/".join(Path(file).parts[-2:])
            rows.append((cum, calls, f"{func} ({short})"))
    rows.sort(reverse=True)
    return {"wall_under_profiler": wall,
            "top": [(name, calls, cum) for cum, calls, name in rows[:18]]}


# --- profile ------------------------------------------------------------------------------

def args_reliability_runs(runs: int) -> int:
    """Runs per variant set for the reliability comparison (failures are rare: ~1 in 10)."""
    return max(3, 2 * runs)


def profile_kubebastion(state: lab.LabState, results: dict[str, Any], runs: int) -> None:
    """bench/kbprofile.py on workload A at this N (see its docstring)."""
    import kbprofile

    kbprofile.OUT.mkdir(parents=True, exist_ok=True)
    config = state.nornir_config
    profile: dict[str, Any] = {"n": state.control_planes + state.workers}
    print("  profile: phases", flush=True)
    profile["phases"] = kbprofile.phase_timings(config, runs)
    print("  profile: timeline", flush=True)
    profile["timeline"] = kbprofile.timeline(config, state.bastion.ssh_address, runs)
    print("  profile: CPU (cProfile, every thread)", flush=True)
    profile["cpu"] = kbprofile.cpu_profile(config)
    print("  profile: reliability and candidate fixes", flush=True)
    profile["reliability"] = kbprofile.reliability(
        config, {h.name: h.sshd_log for h in state.hosts}, args_reliability_runs(runs))
    results["profile"] = profile


# --- machine ------------------------------------------------------------------------------

def _out(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    return (proc.stdout or proc.stderr).strip()


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    os_name = ""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                   .splitlines() if line.startswith("MemTotal")), 0)
    kb_versions = _out([str(KB_PYTHON), "-c", (
        "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in "
        "('kubebastion', 'nornir', 'fabric', 'paramiko', 'cryptography')))")])
    pyinfra_paramiko = _out([str(VENVS / "pyinfra" / "bin" / "python"), "-c",
                             "import importlib.metadata as m; print(m.version('paramiko'))"])
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": os_name,
        "python": platform.python_version(),
        "commit": _out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "versions": {
            "kubebastion": kb_versions,
            "pyinfra": f"{_out([str(VENVS / 'pyinfra' / 'bin' / 'pyinfra'), '--version'])}"
                       f" (paramiko {pyinfra_paramiko})",
            "ansible": _out([str(VENVS / "ansible" / "bin" / "ansible", ), "--version"])
            .splitlines()[0],
            "openssh": _out(["ssh", "-V"]),
        },
    }


# --- main ---------------------------------------------------------------------------------

def plan_phases(sizes: list[int], tools: list[str], workloads: list[str],
                adhoc_sizes: list[int], big_tools: list[str] | None = None,
                ) -> list[tuple[int, str, list[str]]]:
    """(N, tool, workloads) per lab phase. The lab is rebuilt for each phase (about a second)
    so that no phase holds the machine-wide lock for long: the quick tools share one phase
    per N, Ansible gets one phase per workload. Above N = 60 only ``big_tools`` run, on
    workload A (the scale goal of issue 16)."""
    phases: list[tuple[int, str, list[str]]] = []
    for n in sizes:
        if n > 60 and big_tools is not None:
            chosen = [t for t in tools if t in big_tools]
            if chosen and "A" in workloads:
                phases.append((n, ",".join(chosen), ["A"]))
            continue
        quick = [t for t in tools if not t.startswith("ansible")]
        if quick:
            phases.append((n, ",".join(quick), workloads))
        if "ansible" in tools:
            phases += [(n, "ansible", [w]) for w in workloads]
        adhoc = [t for t in tools if t in ADHOC_TOOLS]
        if adhoc and "A" in workloads and n in adhoc_sizes:
            phases.append((n, ",".join(adhoc), ["A"]))
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description="kubebastion vs peers on the lab")
    parser.add_argument("--sizes", default="10,30,60,200", help="lab sizes N (nodes)")
    parser.add_argument("--prefix", default=PREFIX,
                        help=f"lab prefix of the bench's labs (default ${PREFIX_ENV} or kbb)")
    parser.add_argument("--big-tools", default="kubebastion,floor,kb-check,pyinfra,openssh",
                        help="tools run at N > 60 (Ansible's playbook takes minutes there)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--slow-reps", type=int, default=2,
                        help="repetitions for Ansible (playbook and ad-hoc) at N >= 60")
    parser.add_argument("--tools", default=",".join(TOOLS + ADHOC_TOOLS))
    parser.add_argument("--adhoc-sizes", default="30",
                        help="sizes at which the Ansible ad-hoc rows (workload A) run")
    parser.add_argument("--adhoc-reps", type=int, default=3,
                        help="repetitions of the Ansible ad-hoc rows (issue 2's extra rows)")
    parser.add_argument("--workloads", default="A,B,C")
    parser.add_argument("--skip-fetch", action="store_true")
    parser.add_argument("--skip-labup", action="store_true")
    parser.add_argument("--skip-deploy", action="store_true")
    parser.add_argument("--deploy-shapes", default="3,30",
                        help="worker counts of the deploy-overhead labs (1 control plane each)")
    parser.add_argument("--deploy-reps", type=int, default=3)
    parser.add_argument("--deploy-only", action="store_true",
                        help="only the deploy-overhead phase; the rest of the last results kept")
    parser.add_argument("--skip-venv-forks", action="store_true",
                        help="leave out issue 16 items 1-2 (uv vs pip; forks)")
    parser.add_argument("--venv-forks-only", action="store_true",
                        help="only issue 16 items 1-2; the rest of the last results kept")
    parser.add_argument("--venv-reps", type=int, default=2,
                        help="fresh 1+3 deploys per venv installer (uv, pip)")
    parser.add_argument("--venv-tmpfs", action="store_true",
                        help="item 1's labs keep their hosts' files on a tmpfs (reported "
                             "apart from the disk's)")
    parser.add_argument("--forks-reps", type=int, default=2,
                        help="playbook runs per forks setting (chosen, 5)")
    parser.add_argument("--forks-workers", type=int, default=30,
                        help="workers of the forks lab (1 control plane)")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--profile-only", action="store_true",
                        help="only the profile phase (largest N)")
    parser.add_argument("--profile-runs", type=int, default=4,
                        help="runs per profile measurement (x2 per variant set for reliability)")
    parser.add_argument("--lock-wait", type=float, default=3600.0)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", default="",
                        help="a sentence for the top of results.md (what this run left out, "
                             "and why)")
    args = parser.parse_args()

    if args.report_only:
        saved = json.loads(RESULTS_JSON.read_text())
        if args.note:
            saved["note"] = args.note
            RESULTS_JSON.write_text(json.dumps(saved, indent=1))
        write_report(saved)
        return 0
    use_prefix(args.prefix)
    if os.geteuid() != 0:
        print("bench/run needs root (the lab: network namespaces, sshd)", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tools = [t for t in args.tools.split(",") if t]
    workloads = [w for w in args.workloads.split(",") if w]
    adhoc_sizes = [int(s) for s in args.adhoc_sizes.split(",") if s]
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine_info(), "lab_up": {}, "series": [],
                               "config": vars(args), "note": args.note}
    partial_run = args.profile_only or args.deploy_only or args.venv_forks_only
    this_run = results["machine"]
    if partial_run and RESULTS_JSON.exists():  # refresh one phase, keep the rest (and the
        # header of the run they come from: this run's date goes to venv_forks_runs)
        results = json.loads(RESULTS_JSON.read_text())
    elif partial_run and RESULTS_MD.exists():  # no raw results: keep the last report's text
        results["kept_report"] = RESULTS_MD.read_text()
    lab_ups: dict[str, list[float]] = results["lab_up"]
    join_driver_cgroup()

    def save() -> None:
        RESULTS_JSON.write_text(json.dumps(results, indent=1))

    phases: list[tuple[int, str, list[str]]] = []
    if args.profile_only:
        args.skip_labup = args.skip_fetch = args.skip_deploy = args.skip_venv_forks = True
        tools, workloads = ["kubebastion"], ["A"]
    elif args.deploy_only:
        args.skip_labup = args.skip_fetch = args.skip_profile = args.skip_venv_forks = True
    elif args.venv_forks_only:
        args.skip_labup = args.skip_fetch = args.skip_profile = args.skip_deploy = True
    else:
        big = [t for t in args.big_tools.split(",") if t]
        phases = plan_phases(sizes, tools, workloads, adhoc_sizes, big)
    if not args.skip_labup or not args.skip_fetch:
        with lab_phase("lab.up 1+3, fetch-kubeconfig", args.lock_wait):
            state, seconds = timed_up(1, 3)
            lab_ups.setdefault("1+3", []).append(seconds)
            print(f"  lab.up bastion + 1 control plane + 3 workers: {seconds:.2f} s", flush=True)
            if not args.skip_fetch:
                fetch_kubeconfig_phase(state, args.reps, results)
        save()
    if not args.skip_labup:
        with lab_phase("lab.up 1+30", args.lock_wait):
            _, seconds = timed_up(1, 30)
            lab_ups.setdefault("1+30", []).append(seconds)
            print(f"  lab.up bastion + 1 control plane + 30 workers: {seconds:.2f} s",
                  flush=True)

    if not args.skip_deploy:
        for workers in (int(w) for w in args.deploy_shapes.split(",") if w):
            with lab_phase(f"deploy overhead 1+{workers}", args.lock_wait):
                deploy_overhead_phase(workers, args.deploy_reps, results)
            save()

    if args.venv_forks_only:  # said apart from the run whose other sections are kept
        runs = results.setdefault("venv_forks_runs", {})
        done = [*(["item 1" + (" (tmpfs)" if args.venv_tmpfs else "")]
                  if args.venv_reps > 0 else []), *(["item 2"] if args.forks_reps > 0 else [])]
        for item in done:
            runs[item] = {"date": this_run["date"], "commit": this_run["commit"],
                          "note": args.note}
    if not args.skip_venv_forks and args.venv_reps > 0:  # 0: keep the last results'
        with (lab_phase("issue 16 item 1: venv with uv vs pip, 1+3", args.lock_wait),
              state_on_tmpfs(args.venv_tmpfs)):
            venv_installers_phase(args.venv_reps, results, args.venv_tmpfs)
        save()
    if not args.skip_venv_forks and args.forks_reps > 0:
        with lab_phase(f"issue 16 item 2: forks on 1+{args.forks_workers}", args.lock_wait):
            forks_phase(args.forks_reps, args.forks_workers, results)
        save()

    for n, phase_tools, phase_workloads in phases:
        with lab_phase(f"N={n} {phase_tools} {','.join(phase_workloads)}", args.lock_wait):
            state, seconds = timed_up(1, n - 1)
            lab_ups.setdefault(f"1+{n - 1}", []).append(seconds)
            print(f"  lab.up N={n} (1+{n - 1}): {seconds:.2f} s", flush=True)
            make_secret_files(state)
            setup = write_setup(state, n, phase_tools.replace(",", "+"))
            names = phase_tools.split(",")
            reps = {t: min(args.reps, args.slow_reps) if t.startswith("ansible") and n >= 60
                    else min(args.reps, args.adhoc_reps) if t in ADHOC_TOOLS
                    else args.reps for t in names}
            notes = {t: f"{r} runs at this N" for t, r in reps.items() if r != args.reps}
            for workload in phase_workloads:
                for series in run_interleaved(names, workload, setup, n, reps, notes):
                    results["series"].append(series_json(series))
        save()
    if not args.skip_profile and "A" in workloads and "kubebastion" in tools:
        import kbprofile

        n = max((size for size in sizes if size <= 60), default=max(sizes))
        with lab_phase(f"N={n} profile", args.lock_wait):
            state, _ = timed_up(1, n - 1)
            profile_kubebastion(state, results, args.profile_runs)
        results["profile"]["imports"] = kbprofile.import_cost()

    if not partial_run:
        results["total_seconds"] = time.monotonic() - started
    save()
    write_report(results)
    from report import scale_goals

    print("\n".join(scale_goals([series_from_json(x) for x in results["series"]])))
    print("\n".join(venv_forks.goals(results)))
    print(f"bench done in {time.monotonic() - started:.0f} s: {RESULTS_MD}", flush=True)
    return 0


def write_report(results: dict[str, Any]) -> None:
    from report import render  # bench/report.py: markdown only, no lab

    series = [series_from_json(s) for s in results["series"]]
    RESULTS_MD.write_text(render(results, series))
    if results.get("kept_report"):  # a partial run without the raw results of the last
        from report import splice_section

        RESULTS_MD.write_text(splice_section(results["kept_report"], results))
    plot = VENVS / "plot" / "bin" / "python"
    if plot.exists() and (series or results.get("forks") or any(
            results.get(key) for key in venv_forks.VENV_KEYS.values())):
        subprocess.run([str(plot), str(BENCH / "plot.py"), str(RESULTS_JSON), str(PLOT_PNG)],
                       check=False, timeout=120)


if __name__ == "__main__":
    sys.exit(main())
