"""bench/venv_forks.py's pure parts: which installer a report names, the goals of issue 16
items 1 and 2 as met or not with their ratios, and the report spliced into an earlier one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # report.py imports its siblings by name
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def results(uv: float, pip: float, chosen: float, five: float) -> dict[str, Any]:
    def run(overhead: float) -> dict[str, Any]:
        return {"ok": True, "rc": 0, "wall": overhead + 10, "playbook": 10,
                "overhead": overhead}

    return {
        "machine": {"date": "2026-11-29 21:00 UTC", "commit": "abc1234"},
        "venv_installers": {"uv": [run(uv)], "pip": [run(pip), {"ok": False, "rc": 1}]},
        "forks": {"latency": 0.5, "workers": 10,
                  "chosen": [{"ok": True, "playbook": chosen, "wall": chosen + 5,
                              "forks": {"value": 11, "reason": "one per host (11 hosts)"}}],
                  "five": [{"ok": True, "playbook": five, "wall": five + 5,
                            "forks": {"value": 5, "reason": "set in the inventory"}}],
                  "memory": {"pss_kb": 512000, "rss_kb": 1024000, "processes": 30}},
    }


def test_the_installer_is_read_from_the_venv_row() -> None:
    vf = load("venv_forks")
    report = {"steps": [{"hosts": [{"data": {"part": "venv"}, "detail":
                                    "sent ...; built /h/v from X with uv (uv 0.13.8, sent)"}]}]}
    assert vf.installer_of(vf.venv_row_detail(report)) == "uv"
    kubespray = {"rows": [{"data": {"part": "venv"}, "detail": "built /h/v with pip (why)"}]}
    assert vf.installer_of(vf.venv_row_detail(kubespray)) == "pip"
    assert vf.installer_of(vf.venv_row_detail({"rows": []})) == ""


def test_goals_give_the_ratio_and_say_met_or_not() -> None:
    vf = load("venv_forks")
    met = vf.goals(results(uv=10, pip=40, chosen=30, five=90))
    assert "10.0 s vs 40.0 s = 0.25x | **met**" in met[0]
    assert "1+10, latency 0.5 s" in met[1] and "(11)" in met[1]
    assert "30.0 s vs 90.0 s = 0.33x | **met**" in met[1]
    assert "500 MB PSS (1000 MB RSS) over 30" in met[2]
    missed = vf.goals(results(uv=30, pip=40, chosen=50, five=90))
    assert "= 0.75x | **not met**" in missed[0] and "= 0.56x | **not met**" in missed[1]


def test_both_item_1_ratios_when_the_preflight_was_timed() -> None:
    vf = load("venv_forks")
    data = results(uv=17, pip=30, chosen=30, five=90)
    for name, own in (("uv", 6.0), ("pip", 19.0)):
        data["venv_installers"][name][0].update(preflight=11.0, own_overhead=own)
    rows = vf.goals(data)
    assert "preflight counted as overhead" in rows[0] and "= 0.57x | **not met**" in rows[0]
    assert "own overhead" in rows[1] and "6.0 s vs 19.0 s = 0.32x | **met**" in rows[1]
    assert "forks (11)" in rows[2]
    table = "\n".join(vf.render(data))
    assert "| uv | 1 | 27.0 | 11.0 | 10.0 | 17.0 | 6.0 |" in table


def test_a_tmpfs_run_of_item_1_is_reported_beside_the_disk_one() -> None:
    vf = load("venv_forks")
    data = results(uv=30, pip=40, chosen=30, five=90)
    data["venv_installers_tmpfs"] = results(uv=5, pip=20, chosen=1, five=1)["venv_installers"]
    data["venv_forks_runs"] = {"item 1 (tmpfs)": {"date": "D", "commit": "C", "note": ""}}
    rows = vf.goals(data)
    assert "lab on the disk" in rows[0] and "= 0.75x | **not met**" in rows[0]
    assert "lab on a tmpfs" in rows[1] and "5.0 s vs 20.0 s = 0.25x | **met**" in rows[1]
    text = "\n".join(vf.render(data))
    assert "Item 1 (lab on a tmpfs)" in text and "item 1 (tmpfs): D at commit C" in text


def test_a_partial_run_is_spliced_into_the_last_report_once() -> None:
    report = load("report")
    kept = ("# Benchmark results\n\n- Date: earlier\n- Whole bench run: 19.8 min\n\n"
            "Lab of size N ...\n\n## Goals of issue 16 (workload A)\n\n| a | b |\n\n"
            "### N = 200 with a stock bastion sshd\n\ntext\n\n## Deploy overhead\n\nrows\n")
    once = report.splice_section(kept, results(10, 40, 30, 90))
    assert once.index("## Goals of issue 16, items 1 and 2") < once.index(
        "## Goals of issue 16 (workload A)") < once.index("### N = 200") < once.index(
        "## Deploy overhead")
    assert "- Issue 16 items 1 and 2: measured 2026-11-29 21:00 UTC at commit abc1234" in once
    assert report.splice_section(once, results(10, 40, 30, 90)) == once
