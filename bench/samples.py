"""Measured samples and their medians (no lab, no third-party imports: report.py uses it)."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Sample:
    """One tool invocation: wall and CPU seconds, exit code, new logins per host."""

    wall: float
    cpu_rusage: float
    cpu_tree: float | None
    rc: int
    logins: dict[str, int]
    #: CPU of the lab hosts (their sshds, sessions and commands) during the run.
    hosts_cpu: float | None = None
    #: CPU the rest of the machine used during the run (other people's work): noise.
    foreign_cpu: float | None = None
    #: Peak resident memory of the tool's process (``wait4``'s ru_maxrss), KB.
    peak_rss_kb: int | None = None


@dataclass
class Series:
    """The repetitions of one tool on one workload at one lab size."""

    tool: str
    workload: str
    n: int
    hosts: int
    samples: list[Sample] = field(default_factory=list)
    note: str = ""

    @property
    def good(self) -> list[Sample]:
        """The runs that succeeded: medians are taken over these."""
        return [s for s in self.samples if s.rc == 0]

    @property
    def failures(self) -> int:
        return len(self.samples) - len(self.good)

    @property
    def ok(self) -> bool:
        """At least one run succeeded (failed runs are reported, not hidden)."""
        return bool(self.good)

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.good)

    @property
    def cpu_rusage(self) -> float:
        return statistics.median(s.cpu_rusage for s in self.good)

    @property
    def cpu_tree(self) -> float | None:
        return _median([s.cpu_tree for s in self.good])

    @property
    def hosts_cpu(self) -> float | None:
        return _median([s.hosts_cpu for s in self.good])

    @property
    def peak_rss_kb(self) -> float | None:
        return _median([s.peak_rss_kb for s in self.good])

    @property
    def foreign_load(self) -> float | None:
        """Cores the rest of the machine kept busy during the runs (median)."""
        return _median([s.foreign_cpu / s.wall if s.foreign_cpu is not None and s.wall
                        else None for s in self.good])


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def series_json(series: Series) -> dict[str, Any]:
    return {"tool": series.tool, "workload": series.workload, "n": series.n,
            "hosts": series.hosts, "note": series.note,
            "samples": [asdict(s) for s in series.samples]}


def series_from_json(data: dict[str, Any]) -> Series:
    return Series(data["tool"], data["workload"], data["n"], data["hosts"],
                  [Sample(**s) for s in data["samples"]], data.get("note", ""))
