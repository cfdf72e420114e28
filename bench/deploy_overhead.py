"""Deploy's own overhead: the wall time of ``invoke deploy`` minus kubespray's playbook.

Issue 6 asks how little kubebastion adds on top of kubespray, for bastion + 1 control
plane + 3 workers and + 30 workers (target: under 5 s for 1 + 3). Each repetition
deploys a lab built from nothing. The playbook is the lab's kubespray stand-in, run by
the real ansible-playbook from the bastion. Everything else is the overhead: the
interpreter and imports, preflight, NAT, the egress check, the kubespray checkout,
venv and inventory, admin.conf, fetch-kubeconfig and the wait for Ready.

The same lab is then deployed again. Nothing is left to do, so the playbook is skipped
and the whole run is overhead: the cost of a no-op rerun. Last, ``--force`` runs the
playbook once more on the prepared bastion (checkout and venv in place): the overhead of
a deploy that only has the playbook left to do, without the one-time installs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

#: Each repetition, in order: (name, extra ``invoke deploy`` arguments).
KINDS = (("fresh", ()), ("rerun", ()), ("forced", ("--force",)))


def deploy_once(invoke: Path, config: Path, env: dict[str, str], cwd: Path, log: Path,
                extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One ``invoke deploy --json`` as a process: its wall time, the playbook's time
    (from the JSON report), the overhead, and each step's seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(invoke), "deploy", "--config", str(config), "--json", *extra],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=1800,
                          check=False)
    wall = time.perf_counter() - t0
    log.write_text(proc.stdout + "\n--- stderr\n" + proc.stderr)
    sample: dict[str, Any] = {"rc": proc.returncode, "wall": wall}
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sample["error"] = (proc.stderr.strip().splitlines() or ["no JSON report"])[-1]
        return sample
    steps = {s["name"]: s["seconds"] for s in report["steps"]}
    playbook = _playbook_seconds(report, "playbook")
    preflight = _playbook_seconds(report, "preflight")
    sample.update(report_seconds=report["seconds"], playbook=playbook, preflight=preflight,
                  overhead=wall - playbook, own_overhead=wall - playbook - preflight,
                  steps=steps, ok=report["ok"], changed=report["changed"])
    if not report["ok"]:
        sample["error"] = f"step {report['failed_step']} failed (log {log})"
    return sample


def _playbook_seconds(report: dict[str, Any], which: str) -> float:
    """The seconds of kubespray's ``which`` ("playbook": cluster.yml; "preflight": its
    ``--tags facts,asserts`` run) in a deploy's JSON report; 0 when it did not run."""
    return next((float((s["extra"][which] or {}).get("seconds") or 0.0)
                 for s in report["steps"] if (s.get("extra") or {}).get(which)), 0.0)


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the successful samples (None when none succeeded)."""
    good = [s for s in samples if s["rc"] == 0 and s.get("ok")]
    if not good:
        return {"runs": len(samples), "good": 0}
    steps = sorted({name for s in good for name in s["steps"]})
    return {
        "runs": len(samples), "good": len(good),
        "wall": statistics.median(s["wall"] for s in good),
        "playbook": statistics.median(s["playbook"] for s in good),
        "overhead": statistics.median(s["overhead"] for s in good),
        "overhead_max": max(s["overhead"] for s in good),
        "steps": {n: statistics.median(s["steps"].get(n, 0.0) for s in good) for n in steps},
    }


def render(results: dict[str, Any]) -> list[str]:
    """The markdown section of bench/results.md."""
    entries = results.get("deploy_overhead")
    out = ["## Deploy overhead (issue 6)", ""]
    if not entries:
        return [*out, "TODO: not measured in this run (`--skip-deploy`).", ""]
    out += [
        "`invoke deploy --config <lab config> --json` as a process, on a lab built from "
        "nothing for every repetition. Playbook = the playbook's own time in the JSON report "
        "(the lab's kubespray stand-in, run by the real ansible-playbook on the bastion). "
        "Overhead = process wall time minus that. Fresh = a lab built from nothing (the "
        "checkout is uploaded and the venv built: one-time work). Rerun = the same deploy "
        "again right away: nothing to do, so the playbook is skipped and all of it is "
        "overhead. Forced = `--force` on the deployed lab: the playbook runs again, the "
        "checkout and venv are in place.",
        "",
        "| lab | deploy | wall s | playbook s | overhead s (median, max) | under 5 s "
        "(1+3) | runs ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for shape, entry in entries.items():
        for kind, _ in KINDS:
            samples = entry.get(kind) or []
            if not samples:
                continue
            summary = summarize(samples)
            if not summary.get("good"):
                errors = "; ".join(s.get("error", "") for s in samples)[:300]
                out.append(f"| 1+{shape} | {kind} | FAILED: {errors} | | | | "
                           f"0/{summary['runs']} |")
                continue
            target = (("**met**" if summary["overhead"] < 5 else "**missed**")
                      if shape == "3" else "-")
            failures = [s.get("error", "") for s in samples if not (s["rc"] == 0 and
                                                                    s.get("ok"))]
            runs = f"{summary['good']}/{summary['runs']}" + (
                f" (failed: {'; '.join(failures)[:200]})" if failures else "")
            out.append(f"| 1+{shape} | {kind} | {summary['wall']:.2f} | "
                       f"{summary['playbook']:.2f} | {summary['overhead']:.2f} "
                       f"({summary['overhead_max']:.2f}) | {target} | {runs} |")
    out += ["", "Where the overhead goes (median seconds per step, fresh deploy; the kubespray "
            "step includes the playbook):", "",
            "| lab | " + " | ".join(_step_names(entries)) + " |",
            "|---|" + "---|" * len(_step_names(entries))]
    for shape, entry in entries.items():
        steps = summarize(entry["fresh"]).get("steps") or {}
        out.append(f"| 1+{shape} | " + " | ".join(
            f"{steps[n]:.2f}" if n in steps else "-" for n in _step_names(entries)) + " |")
    return [*out, ""]


def _step_names(entries: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for entry in entries.values():
        for sample in entry["fresh"]:
            for name in sample.get("steps") or {}:
                if name not in names:
                    names.append(name)
    return names
