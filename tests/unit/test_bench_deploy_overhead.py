"""bench/deploy_overhead.py's pure parts: medians over runs and the results.md section."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_overhead", BENCH / "deploy_overhead.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample(wall: float, playbook: float, rc: int = 0) -> dict[str, Any]:
    return {"rc": rc, "wall": wall, "playbook": playbook, "overhead": wall - playbook,
            "ok": rc == 0, "steps": {"preflight": 0.5, "kubespray": playbook + 1.0}}


def test_summary_is_the_median_of_the_good_runs_only() -> None:
    summary = load().summarize([sample(10, 7), sample(12, 8), sample(30, 1, rc=1),
                                sample(11, 7)])
    assert summary["good"] == 3 and summary["runs"] == 4
    assert summary["overhead"] == 4.0 and summary["overhead_max"] == 4.0
    assert summary["steps"]["kubespray"] == 8.0


def test_the_section_says_whether_the_1_plus_3_target_is_met() -> None:
    module = load()
    met = module.render({"deploy_overhead": {
        "3": {"fresh": [sample(10, 7)], "rerun": [sample(2, 0)]}}})
    missed = module.render({"deploy_overhead": {
        "3": {"fresh": [sample(20, 7)], "rerun": [sample(2, 0)]}}})
    assert "| 1+3 | fresh | 10.00 | 7.00 | 3.00 (3.00) | **met** | 1/1 |" in met
    assert "| 1+3 | rerun | 2.00 | 0.00 | 2.00 (2.00) | **met** | 1/1 |" in met
    assert "| 1+3 | fresh | 20.00 | 7.00 | 13.00 (13.00) | **missed** | 1/1 |" in missed


def test_a_failed_run_among_good_ones_is_named_in_the_runs_column() -> None:
    failed = dict(sample(5, 0, rc=1), error="step preflight failed")
    lines = load().render({"deploy_overhead": {
        "30": {"fresh": [sample(60, 50), failed, sample(62, 51)], "rerun": []}}})
    row = next(line for line in lines if line.startswith("| 1+30 | fresh"))
    assert row.endswith("| 2/3 (failed: step preflight failed) |")


def test_a_shape_where_every_deploy_failed_is_reported_as_failed() -> None:
    failed = dict(sample(5, 0, rc=1), error="step egress failed")
    text = "\n".join(load().render({"deploy_overhead": {
        "30": {"fresh": [failed], "rerun": []}}}))
    assert "| 1+30 | fresh | FAILED: step egress failed | | | | 0/1 |" in text


def test_without_measurements_the_section_is_a_todo() -> None:
    assert any(line.startswith("TODO") for line in load().render({}))


def test_both_playbooks_are_read_from_a_deploy_report() -> None:
    # The shape of `invoke deploy --json` (captured from a lab deploy, trimmed).
    kubespray: dict[str, Any] = {
        "playbook": {"seconds": 18.6, "rc": 0}, "preflight": {"seconds": 10.7, "rc": 0},
        "health": {}, "reasons": []}
    report = {"steps": [{"name": "nat", "seconds": 0.25, "extra": None},
                        {"name": "kubespray", "seconds": 33.8, "extra": kubespray}]}
    module = load()
    assert module._playbook_seconds(report, "playbook") == 18.6
    assert module._playbook_seconds(report, "preflight") == 10.7
    kubespray["preflight"] = None  # skipped (--skip-preflight)
    assert module._playbook_seconds(report, "preflight") == 0.0
