"""A playbook's verdict per host, as report rows: what kubespray's preflight (its own
``--tags facts,asserts`` checks) says about each node, like any other step's rows.

Pure: the parsed output in, rows out. A node missing from the recap did not take part
(``--limit``) and gets no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from kubebastion.kubespray.playbook import PlaybookOutcome
from kubebastion.report import CHANGED, FAILED, OK, HostOutcome
from kubebastion.secrets import redact


def recap_rows(outcome: PlaybookOutcome, nodes: Sequence[str], part: str) -> list[HostOutcome]:
    """One row per node in the recap: its counts, or the task that stopped it and why."""
    failures = {f.host: f for f in outcome.parsed.decisive_failures()}
    rows = []
    for name in nodes:
        recap = outcome.parsed.recap.get(name)
        if recap is None:
            continue
        data: dict[str, object] = {"part": part, "recap": asdict(recap)}
        if recap.succeeded:
            status = CHANGED if recap.changed else OK
            detail = f"ok={recap.ok} changed={recap.changed} skipped={recap.skipped}"
        else:
            status = FAILED
            failure = failures.get(name)
            if failure is None:
                detail = (f"failed={recap.failed} unreachable={recap.unreachable} "
                          f"(log: {outcome.remote_log})")
            else:
                what = "unreachable" if failure.unreachable else "failed"
                detail = f"{what} at task [{failure.task}]: {failure.message}"
                data.update(task=failure.task, message=redact(failure.message))
        rows.append(HostOutcome(name, status, redact(detail), data))
    return rows
