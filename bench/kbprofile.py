"""Where kubebastion's time goes on workload A, and what candidate fixes would buy.

Run by the driver in its own lab phase (largest N). Everything here measures separate
processes of ``kb_workload.py`` / ``kb_experiments.py``, as the benchmark does:

- phases inside the process (``--timings``) plus interpreter start-up and shutdown,
- a timeline of every connection and task (``--timeline``),
- a CPU profile of every thread (cProfile with each thread's CPU clock),
- import cost of kubebastion's modules,
- reliability: many runs as is and with the candidate fix (``--variant``), counting
  failed runs and the bastion sshd's "referred to nonexistent channel" disconnects.
"""

from __future__ import annotations

import json
import pstats
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
KB_PYTHON = REPO / ".venv" / "bin" / "python"
EXPERIMENTS = BENCH / "kb_experiments.py"
OUT = BENCH / "work" / "profile"

#: (label, kb_experiments variants) compared for reliability and wall time.
VARIANT_SETS: tuple[tuple[str, list[str]], ...] = (
    ("as is", []),
    ("fast-exit", ["fast-exit"]),
)
IMPORTS = ("import kubebastion.runtime, kubebastion.ssh.shell, kubebastion.ssh.remote, "
           "kubebastion.check")


def _run(argv: list[str], timeout: float = 120) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return time.perf_counter() - t0, proc


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    return {}


def phase_timings(config: Path, runs: int) -> dict[str, float]:
    """Median seconds of: interpreter start-up, imports, build_run, nornir.run, close,
    shutdown, and the whole process."""
    rows: list[dict[str, float]] = []
    for _ in range(runs):
        t0 = time.time()
        wall, proc = _run([str(KB_PYTHON), str(BENCH / "kb_workload.py"), "--config",
                           str(config), "--workload", "A", "--timings"])
        t1 = time.time()
        t = _last_json(proc.stderr)
        if proc.returncode != 0 or not t:
            continue
        rows.append({"startup": t["started_epoch"] - t0, "imports": t["imports"],
                     "build_run": t["build_run"], "run": t["run"], "close": t["close"],
                     "shutdown": t1 - t["closed_epoch"], "total": wall})
    if not rows:
        return {}
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]} | {"runs": len(rows)}


def timeline(config: Path, bastion_address: str, runs: int) -> dict[str, float]:
    """Median times (s since the interpreter started) of the run's milestones."""
    rows: list[dict[str, float]] = []
    for i in range(runs):
        path = OUT / f"timeline-{i}.json"
        _, proc = _run([str(KB_PYTHON), str(EXPERIMENTS), "--timeline", str(path), "--",
                        "--config", str(config), "--workload", "A"])
        if proc.returncode != 0 or not path.exists():
            continue
        data = json.loads(path.read_text())
        tasks = [e for e in data["events"] if e["kind"] == "task"]
        conns = [e for e in data["events"] if e["kind"] == "connect"]
        bastion = [e for e in conns if e["name"] == bastion_address]
        nodes = [e for e in conns if e["name"] != bastion_address]
        if not (tasks and bastion and nodes):
            continue
        rows.append({
            "first task starts": min(e["start"] for e in tasks),
            "bastion connected": bastion[0]["end"],
            "bastion connect took": bastion[0]["end"] - bastion[0]["start"],
            "first node connected": min(e["end"] for e in nodes),
            "last node connected": max(e["end"] for e in nodes),
            "node connect took (median)": statistics.median(e["end"] - e["start"]
                                                            for e in nodes),
            "last task done": max(e["end"] for e in tasks),
            "close done": data["exit"],
        })
    if not rows:
        return {}
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


_GROUPS = (
    ("paramiko (SSH protocol, packets, MAC checks)", ("paramiko/",)),
    ("cryptography / PyNaCl (C crypto)", ("cryptography/", "nacl/", "_sodium", "_openssl",
                                          "_rust", "_hashlib", "hmac")),
    ("imports (importlib, marshal, module bodies)", ("<frozen importlib", "marshal",
                                                      "<module>")),
    ("Nornir + inventory YAML (ruamel)", ("nornir/", "ruamel/")),
    ("Fabric / Invoke", ("fabric/", "invoke/")),
    ("kubebastion", ("kubebastion/",)),
    ("threads, locks, queues (stdlib)", ("threading.py", "concurrent/", "_thread", "queue")),
    ("sockets, select", ("socket", "select")),
)


def cpu_profile(config: Path) -> dict[str, Any]:
    """cProfile of every thread, timed with each thread's CPU clock."""
    path = OUT / "cpu-A.prof"
    _, proc = _run([str(KB_PYTHON), str(EXPERIMENTS), "--cprofile", str(path), "--",
                    "--config", str(config), "--workload", "A"])
    if proc.returncode != 0 or not path.exists():
        return {"error": proc.stderr[-500:]}
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    groups: dict[str, float] = {}
    functions: list[tuple[float, str]] = []
    for (file, line, func), (_, _, tt, _, _) in raw.items():
        where = f"{file}:{func}"
        group = next((name for name, needles in _GROUPS
                      if any(n in where for n in needles)), "other (stdlib, builtins)")
        groups[group] = groups.get(group, 0.0) + tt
        short = "/".join(Path(file).parts[-2:]) if file.startswith("/") else file
        functions.append((tt, f"{func} ({short}:{line})" if line else func))
    cumulative = {f"{func} ({'/'.join(Path(file).parts[-2:])})": ct
                  for (file, _, func), (_, _, _, ct, _) in raw.items()
                  if "kubebastion/" in file or func in ("InitNornir", "build_run")}
    return {
        "total_cpu": total,
        "groups": sorted(((k, v) for k, v in groups.items()), key=lambda kv: -kv[1]),
        "top_self": [(name, tt) for tt, name in sorted(functions, reverse=True)[:15]],
        "kubebastion_cumulative": sorted(cumulative.items(), key=lambda kv: -kv[1])[:10],
    }


def import_cost(runs: int = 9) -> dict[str, Any]:
    """Seconds from process start to 'imports done', and to an empty interpreter's."""
    cases = {"python -c pass": "pass", "as is": IMPORTS}
    out: dict[str, Any] = {}
    for name, code in cases.items():
        walls = [_run([str(KB_PYTHON), "-c", code])[0] for _ in range(runs)]
        out[name] = statistics.median(walls)
    _, proc = _run([str(KB_PYTHON), "-X", "importtime", "-c", IMPORTS])
    out["heaviest"] = heaviest_imports(proc.stderr)
    return out


def heaviest_imports(text: str, depth_limit: int = 3) -> list[tuple[str, float]]:
    """Cumulative ms of the heaviest modules near the top of the import tree."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) // 2 < depth_limit:
            rows.append((m.group(3), int(m.group(1)) / 1000))
    return sorted(rows, key=lambda kv: -kv[1])[:14]


def reliability(config: Path, logs: dict[str, Path], runs: int) -> list[dict[str, Any]]:
    """Runs of workload A per variant set (interleaved): failed runs, sshd disconnects for
    "referred to nonexistent channel" (on the bastion: every tunnel goes with it; on a
    node: that node) and median wall time."""
    tally: dict[str, dict[str, Any]] = {
        label: {"variant": label, "runs": 0, "failed": 0, "bastion_disconnects": 0,
                "node_disconnects": 0, "walls": [], "errors": []}
        for label, _ in VARIANT_SETS}
    for _ in range(runs):
        for label, variants in VARIANT_SETS:
            sizes = {name: path.stat().st_size for name, path in logs.items()}
            argv = [str(KB_PYTHON), str(EXPERIMENTS)]
            for v in variants:
                argv += ["--variant", v]
            wall, proc = _run([*argv, "--", "--config", str(config), "--workload", "A"])
            t = tally[label]
            for name, path in logs.items():
                with path.open(errors="replace") as log:
                    log.seek(sizes[name])
                    dropped = log.read().count("referred to nonexistent channel")
                t["bastion_disconnects" if name == "bastion" else "node_disconnects"] += dropped
            t["runs"] += 1
            t["walls"].append(wall)
            if proc.returncode != 0:
                t["failed"] += 1
                hosts = [ln for ln in proc.stderr.splitlines() if re.match(r"^[\w-]+: ", ln)]
                t["errors"].append(f"{proc.stdout.strip()}: {hosts[0][:160] if hosts else ''}")
    out = []
    for t in tally.values():
        walls = t.pop("walls")
        t["wall"] = statistics.median(walls) if walls else None
        t["errors"] = t["errors"][:3]
        out.append(t)
    return out
