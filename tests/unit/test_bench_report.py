"""bench/report.py's pure parts: issue 16's goals and the stock-sshd table (no lab)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
from samples import Sample, Series  # noqa: E402


def series(tool: str, n: int, walls: list[float], rc: int = 0,
           peak_kb: int = 60_000) -> Series:
    samples = [Sample(w, 0.1, 0.1, rc, {"bastion": 1}, peak_rss_kb=peak_kb) for w in walls]
    return Series(tool, "A", n, n + 1, samples)


def goals(rows: list[Series]) -> dict[str, str]:
    lines = [line for line in report.scale_goals(rows)
             if line.startswith("| ") and not line.startswith("| goal ")]
    return {line.split(" | ")[0][2:]: line for line in lines}


def test_every_goal_says_met_or_not_with_its_ratio() -> None:
    rows = [series("kubebastion", 60, [1.2, 1.1, 1.3]), series("floor", 60, [1.0, 1.0]),
            series("pyinfra", 60, [2.0, 2.4]), series("kubebastion", 200, [4.0, 4.4],
                                                     peak_kb=80_000),
            series("kb-check", 200, [4.1, 4.2])]
    found = goals(rows)
    assert "1.20x | **not met**" in found["A at N = 60: kubebastion <= 1.15x raw-Paramiko floor"]
    assert "= 0.55x | **not met**" in found["A at N = 60: kubebastion <= 0.5x pyinfra"]
    assert "2 of 2 runs succeeded | **met**" in found[
        "N = 200: `invoke check` completes through the bastion, 0 failures"]
    assert "1.20 s -> 4.20 s = 3.50x | **met**" in found[
        "A: wall from N = 60 to 200 grows <= 3.6x"]
    memory = found["A: peak memory of the process per host (reported)"]
    assert "398 KB/host" in memory and "adds 143 KB" in memory


def test_a_failed_run_at_200_is_not_met_and_missing_rows_say_so() -> None:
    rows = [series("kubebastion", 200, [4.0]), series("kubebastion", 200, [9.0], rc=1)]
    rows = [Series("kubebastion", "A", 200, 201, rows[0].samples + rows[1].samples)]
    found = goals(rows)
    assert "1 of 2 runs succeeded | **not met**" in found[
        "N = 200: workload A completes through the bastion, 0 failures"]
    assert "not measured | n/a" in found["A at N = 60: kubebastion <= 1.15x raw-Paramiko floor"]


def test_the_stock_sshd_table_names_each_tools_failures() -> None:
    found = {"n": 200, "settings": "OpenSSH defaults", "bastion_sshd_log": {"dropped": 51},
             "runs": [{"tool": "kubebastion", "rep": 0, "wall": 6.1, "rc": 0,
                       "bastion_logins": 1},
                      {"tool": "pyinfra", "rep": 0, "wall": 25.9, "rc": 1,
                       "bastion_logins": 182}]}
    lines = report._sshd_defaults({"sshd_defaults": found})
    assert "| kubebastion | 1 of 1 | 6.10 | 1 |" in lines
    assert "| pyinfra | 0 of 1 | 25.90 | 182 |" in lines
    assert report._sshd_defaults({}) == []
