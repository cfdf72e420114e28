"""Wall time against N per tool, one panel per workload (run with bench/.venvs/plot); and,
when the run measured issue 16 items 1-2, ``venv_forks.png`` beside it.

Usage: plot.py RESULTS_JSON OUT_PNG
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = {
    "kubebastion": ("kubebastion", "tab:blue", "o", "-"),
    "pyinfra": ("pyinfra", "tab:orange", "s", "-"),
    "ansible": ("Ansible playbook", "tab:red", "^", "-"),
    "ansible-raw": ("Ansible ad-hoc raw", "tab:red", "v", ":"),
    "ansible-command": ("Ansible ad-hoc command", "tab:pink", "D", ":"),
    "openssh": ("OpenSSH xargs -P", "tab:gray", "x", "--"),
    "floor": ("raw Paramiko (floor)", "black", ".", "--"),
    "kb-check": ("invoke check", "tab:cyan", "P", ":"),
}
TITLES = {"A": "A: check preflight", "B": "B: sudo read of a 5 KB file",
          "C": "C: five commands in a row"}


def main(results_path: Path, out: Path) -> None:
    results: dict[str, Any] = json.loads(results_path.read_text())
    if (results.get("venv_installers") or results.get("venv_installers_tmpfs")
            or results.get("forks")):
        venv_forks(results, out.with_name("venv_forks.png"))
    if results.get("series"):
        wall_vs_n(results, out)


def _medians(samples: list[dict[str, Any]], key: str) -> list[float]:
    return [s[key] for s in samples if s.get("ok") and s.get(key) is not None]


def venv_forks(results: dict[str, Any], out: Path) -> None:
    """Issue 16 items 1-2: each side's runs and median, side by side."""
    panels = []
    for key, where in (("venv_installers", "disk"), ("venv_installers_tmpfs", "tmpfs")):
        v = results.get(key)
        if not v:
            continue
        panels.append((f"1: fresh deploy, 1+3, real requirements, lab on {where}",
                       [(f"uv {label}", _medians(v["uv"], measure))
                        for measure, label in (("overhead", "all"), ("own_overhead", "own"))]
                       + [(f"pip {label}", _medians(v["pip"], measure))
                          for measure, label in (("overhead", "all"), ("own_overhead", "own"))],
                       "overhead s"))
    if results.get("forks"):
        f = results["forks"]
        chosen = next((s["forks"]["value"] for s in f["chosen"] if s.get("forks")), "?")
        panels.append((f"2: playbook, 1+{f.get('workers', 30)}, latency {f['latency']:g} s",
                       [(f"forks {chosen} (chosen)", _medians(f["chosen"], "playbook")),
                        ("forks 5", _medians(f["five"], "playbook"))], "playbook s"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, sides, unit) in zip(axes[0], panels, strict=True):
        for i, (_label, values) in enumerate(sides):
            if values:
                ax.bar(i, statistics.median(values),
                       color="tab:blue" if i < len(sides) / 2 else "tab:gray", alpha=0.6)
                ax.plot([i] * len(values), values, "k.")
        ax.set_xticks(range(len(sides)), [label for label, _ in sides])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(f"{unit} (bar: median, dots: runs)")
        ax.grid(True, axis="y", alpha=0.3)
    m = results["machine"]
    fig.suptitle(f"issue 16 items 1-2 — {m['cores']} cores, {m['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def wall_vs_n(results: dict[str, Any], out: Path) -> None:
    workloads = sorted({s["workload"] for s in results["series"]})
    fig, axes = plt.subplots(1, len(workloads), figsize=(5.2 * len(workloads), 5.0),
                             squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        for tool, (label, color, marker, line) in STYLE.items():
            points = sorted(
                (s["n"], statistics.median(x["wall"] for x in s["samples"] if x["rc"] == 0))
                for s in results["series"]
                if s["tool"] == tool and s["workload"] == workload
                and any(x["rc"] == 0 for x in s["samples"]))
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker,
                        linestyle=line, color=color, label=label)
        ax.set_yscale("log")
        ax.set_title(TITLES.get(workload, workload))
        ax.set_xlabel("N (lab nodes; hosts = N + bastion)")
        ax.set_ylabel("wall time, s (median, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        sizes = sorted({s["n"] for s in results["series"]})
        ax.set_xticks(sizes)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
               frameon=False)
    m = results["machine"]
    fig.suptitle(f"kubebastion vs peers on the lab — {m['cores']} cores, {m['cpu']}, "
                 f"{m['date']}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
