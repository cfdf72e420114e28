"""Figures a test measured (build times, sizes), printed at the end of the pytest run even
when every test passed, so CI logs carry them: ``record_figure`` in a test, the summary
hook in tests/lab/conftest.py."""

from __future__ import annotations

FIGURES: list[str] = []


def record_figure(line: str) -> None:
    FIGURES.append(line)
    print(line)
