"""Issue 16, items 1 and 2: the venv with the real requirements (uv against pip), and
ansible's forks (chosen against ansible's default 5), each side by side in one run.

Item 1: ``invoke deploy --json`` on a fresh lab of 1 control plane + 3 workers, the
stand-in pinning kubespray v2.31.0's real requirements (ansible 11.13.0 and friends),
the wheelhouse cached on the operator's side; the uv and pip paths take turns, repetition
by repetition (``uv: false`` in the inventory makes the pip path). Overhead = wall minus
the playbook's own time (as ``deploy_overhead``). Goal: uv's overhead <= 0.35x pip's. A
deploy runs two kubespray playbooks: its preflight (cluster.yml ``--tags facts,asserts``,
kubespray's own checks, the same on both paths) and cluster.yml. Both ratios are given:
with the preflight counted as overhead, and kubebastion's own overhead (wall minus both
playbooks).

Item 2: on a lab of 1 + 30 (``--forks-workers``) with the stand-in's
``lab_task_latency=0.5`` (every task waits 0.5 s on its node first, in the install plays: a
model of real kubespray's remote waits), ``invoke kubespray --force --skip-preflight``
with the forks kubebastion chooses and with ``forks: 5``, taking turns, after a warm-up
run (not counted) that puts kubespray and its venv on the fresh bastion and plays the
first install, so every counted run is the same rerun. Goal: the playbook in <= 0.4x the
time of forks = 5.
The bastion's memory is sampled while the chosen-forks runs play: every process in the
bastion's namespace whose command line names ansible (ansible-playbook, its forks, their
ssh clients and masters, whose ControlPath is ~/.ansible/cp), summed, peak reported
(PSS: the forks share most pages with the main process; RSS for comparison).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

LATENCY = 0.5
VENV_GOAL = 0.35
FORKS_GOAL = 0.4
INSTALLERS = (("uv", True), ("pip", False))
#: Where item 1's samples are kept: labs on the machine's disk, or on a tmpfs
#: (``bench/run --venv-tmpfs``); each gets its goal rows and table.
VENV_KEYS = {False: "venv_installers", True: "venv_installers_tmpfs"}
_WHERE = {False: "lab on the disk", True: "lab on a tmpfs"}


def venv_row_detail(report: dict[str, Any]) -> str:
    """The venv row of a deploy or kubespray JSON report ("" when there is none)."""
    for step in report.get("steps", [report]):
        for row in step.get("hosts") or step.get("rows") or []:
            if (row.get("data") or {}).get("part") == "venv":
                return str(row.get("detail", ""))
    return ""


def installer_of(detail: str) -> str:
    """"uv" or "pip", as the venv row says it built the venv ("" when it did not)."""
    for name in ("uv", "pip"):
        if f" with {name} (" in detail:
            return name
    return ""


class MemoryPeak:
    """Samples the summed PSS and RSS of the bastion's ansible processes until stopped."""

    def __init__(self, pids: Any, interval: float = 0.25) -> None:
        self._pids = pids  # () -> list[int]
        self._interval = interval
        self._stop = threading.Event()
        self.pss_kb = self.rss_kb = 0
        self.processes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            pss = rss = count = 0
            for pid in self._pids():
                try:
                    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
                except OSError:
                    continue
                count += 1
                for line in text.splitlines():
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
            if pss > self.pss_kb:
                self.pss_kb, self.rss_kb, self.processes = pss, rss, count


def kubespray_once(invoke: Path, config: Path, env: dict[str, str], cwd: Path, log: Path,
                   *extra: str) -> dict[str, Any]:
    """``invoke kubespray --json --force --skip-preflight``: the playbook's seconds and the
    forks it ran with."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(invoke), "kubespray", "--config", str(config), "--json",
                           "--force", "--skip-preflight", *extra], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=3600, check=False)
    sample: dict[str, Any] = {"rc": proc.returncode, "wall": time.perf_counter() - t0}
    log.write_text(proc.stdout + "\n--- stderr\n" + proc.stderr)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sample["error"] = (proc.stderr.strip().splitlines() or ["no JSON report"])[-1]
        return sample
    playbook = report.get("playbook") or {}
    sample.update(playbook=playbook.get("seconds"), forks=playbook.get("forks"),
                  ok=proc.returncode == 0 and not report.get("failed"))
    if not sample["ok"]:
        sample["error"] = f"failed (log {log})"
    return sample


def _median(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get("ok") and s.get(key) is not None]
    return statistics.median(values) if values else None


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def goals(results: dict[str, Any]) -> list[str]:
    """The goal rows of items 1 and 2 (also printed at the end of ``bench/run``)."""
    out = []
    for tmpfs, key in VENV_KEYS.items():
        venv = results.get(key)
        if not venv:
            continue
        where = f", {_WHERE[tmpfs]}"
        measures = (
            ("overhead", f"fresh-bastion deploy overhead, 1+3, real v2.31.0 requirements"
                         f"{where} (wall minus cluster.yml; kubespray's preflight counted "
                         "as overhead)"),
            ("own_overhead", f"the same{where}, kubebastion's own overhead (wall minus both "
                             "of kubespray's playbooks: its preflight and cluster.yml)"))
        for measure, label in measures:
            uv, pip = _median(venv["uv"], measure), _median(venv["pip"], measure)
            if uv is None or not pip:  # own_overhead: absent from results before session 5
                if measure == "overhead":
                    out.append(f"| 1: {label}: uv <= {VENV_GOAL}x pip | a path failed: see "
                               "below | **not met** |")
                break
            out.append(f"| 1: {label}: uv <= {VENV_GOAL}x pip | {uv:.1f} s vs {pip:.1f} s = "
                       f"{uv / pip:.2f}x | {_met(uv / pip <= VENV_GOAL)} |")
    forks = results.get("forks")
    if forks:
        chosen, five = _median(forks["chosen"], "playbook"), _median(forks["five"], "playbook")
        if chosen is not None and five:
            ratio = chosen / five
            value = next((s["forks"]["value"] for s in forks["chosen"] if s.get("forks")), "?")
            out.append(f"| 2: 1+{forks.get('workers', 30)}, latency {forks['latency']:g} s: "
                       "playbook with the chosen "
                       f"forks ({value}) <= {FORKS_GOAL}x forks = 5 | {chosen:.1f} s vs "
                       f"{five:.1f} s = {ratio:.2f}x | {_met(ratio <= FORKS_GOAL)} |")
        else:
            out.append(f"| 2: playbook with the chosen forks <= {FORKS_GOAL}x forks = 5 | a "
                       "run failed: see below | **not met** |")
        memory = forks.get("memory")
        if memory:
            out.append(f"| 2: the bastion's memory peak with the chosen forks (reported) | "
                       f"{memory['pss_kb'] / 1024:.0f} MB PSS ({memory['rss_kb'] / 1024:.0f} MB "
                       f"RSS) over {memory['processes']} ansible and ssh processes | reported |")
    return out


def _warmup_text(warmup: dict[str, Any] | None) -> str:
    if not warmup:
        return ""
    if not warmup.get("ok"):
        return f"; it failed: {warmup.get('error', '')}"
    return f", in {warmup['playbook']:.1f} s"


def render(results: dict[str, Any]) -> list[str]:
    """The markdown section of bench/results.md."""
    if not any(results.get(key) for key in VENV_KEYS.values()) and not results.get("forks"):
        return []
    runs = [f"{item}: {run['date']} at commit {run['commit']}"
            + (f" ({run['note']})" if run.get("note") else "")
            for item, run in sorted((results.get("venv_forks_runs") or {}).items())]
    out = ["## Goals of issue 16, items 1 and 2 (the venv with the real requirements; "
           "ansible's forks)", "",
           "Side by side in one run, the two sides taking turns; ratios of medians. Method "
           "in `bench/README.md` and `bench/venv_forks.py`."
           + (" Measured: " + "; ".join(runs) + "." if runs else ""), "",
           "| goal | measured | |", "|---|---|---|", *goals(results), "",
           "![issue 16 items 1-2](venv_forks.png)", ""]
    for tmpfs, key in VENV_KEYS.items():
        venv = results.get(key)
        if not venv:
            continue
        out += [f"Item 1 ({_WHERE[tmpfs]}), `invoke deploy --json` on a fresh lab of 1+3 per "
                "repetition (wall, playbooks and overheads in seconds; the venv row as the "
                "report gives it):", "",
                "| path | run | wall | preflight | playbook | overhead | own overhead | "
                "venv row |",
                "|---|---|---|---|---|---|---|---|"]
        for name, _ in INSTALLERS:
            for i, s in enumerate(venv[name]):
                if not s.get("ok"):
                    out.append(f"| {name} | {i + 1} | FAILED: {s.get('error', '')[:200]} "
                               "| | | | | |")
                    continue
                out.append(f"| {name} | {i + 1} | {s['wall']:.1f} | "
                           f"{s.get('preflight', 0.0):.1f} | {s['playbook']:.1f} | "
                           f"{s['overhead']:.1f} | {s.get('own_overhead', s['overhead']):.1f} | "
                           f"{s.get('venv_detail', '')[:240]} |")
        out.append("")
    forks = results.get("forks")
    if forks:
        out += [f"Item 2, `invoke kubespray --force --skip-preflight` on "
                f"1+{forks.get('workers', 30)} with `lab_task_latency={forks['latency']:g}` "
                "(seconds; every run counted is a rerun: a warm-up run before them, not "
                "counted, put kubespray and its venv on the fresh bastion and played the first "
                "install" + _warmup_text(forks.get("warmup")) + "):", "",
                "| forks | run | playbook | wall | forks and why (the report) |",
                "|---|---|---|---|---|"]
        for kind in ("chosen", "five"):
            for i, s in enumerate(forks[kind]):
                if not s.get("ok"):
                    out.append(f"| {kind} | {i + 1} | FAILED: {s.get('error', '')[:200]} | | |")
                    continue
                f = s.get("forks") or {}
                out.append(f"| {f.get('value', '?')} | {i + 1} | {s['playbook']:.1f} | "
                           f"{s['wall']:.1f} | {f.get('reason', '')} |")
        out.append("")
    return out
