"""bench/bench.py's pure parts: the phase plan (no lab)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))


@pytest.mark.parametrize("sizes", [[60, 200], [10, 200]])
def test_sizes_above_60_run_only_the_big_tools_on_workload_a(sizes: list[int]) -> None:
    import bench

    phases = bench.plan_phases(sizes, ["kubebastion", "floor", "pyinfra", "ansible"],
                               ["A", "B"], [30], ["kubebastion", "floor"])
    assert phases[-1] == (200, "kubebastion,floor", ["A"])
    assert (sizes[0], "kubebastion,floor,pyinfra", ["A", "B"]) in phases
