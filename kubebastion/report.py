"""Turn Nornir's results into per-host outcomes people and programs can read: the one
translation from the task contract (docs/architecture.md) to report rows.

A row's detail is the failure's message (the exception's, else the failed result's
``summary``), else the ``diff`` (what changed), else the result's ``summary``. A failure's
message is the exception's own message for kubebastion errors (they are written for
operators) and ``Type: message`` otherwise — never a traceback with locals.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from nornir.core.task import AggregatedResult, MultiResult, Result

from kubebastion.errors import KubeBastionError
from kubebastion.secrets import redact

OK, CHANGED, FAILED, SKIPPED = "ok", "changed", "failed", "skipped"


@dataclass
class HostOutcome:
    host: str
    status: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "detail": self.detail,
                "data": self.data}


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, KubeBastionError):
        return redact(str(exc))
    return redact(f"{type(exc).__name__}: {exc}")


def summary_of(value: Any) -> str:
    """A result's one line for people (its ``summary``), or ""."""
    summary = getattr(value, "summary", None)
    return summary if isinstance(summary, str) else ""


def failure_message(result: Result) -> str:
    """Why ``result`` failed: its exception, else its result's summary (the contract), else
    its diff (tasks written before the contract put the message there)."""
    if result.exception is not None:
        return describe_exception(result.exception)
    return redact(summary_of(result.result) or str(result.diff or "") or "failed")


def _detail(result: Result) -> str:
    if result.failed:
        return failure_message(result)
    return redact(str(result.diff or "") or summary_of(result.result))


def outcome_of(host: str, multi: MultiResult) -> HostOutcome:
    """One host's row: the task's own result (the first), failed if any sub-task failed
    (then the first failure's message)."""
    main = multi[0]
    if multi.failed:
        failed = next((r for r in multi if r.failed), main)
        return HostOutcome(host, FAILED, failure_message(failed), _data(main.result))
    if main.result is None and getattr(main, "skipped", False):
        return HostOutcome(host, SKIPPED)
    status = CHANGED if multi.changed else OK
    return HostOutcome(host, status, _detail(main), _data(main.result))


def _data(result: Any) -> dict[str, Any]:
    as_dict = getattr(result, "as_dict", None)
    if callable(as_dict):
        value = as_dict()
        if isinstance(value, dict):
            return value
    if isinstance(result, dict):
        return result
    return {}


def outcomes(results: AggregatedResult) -> list[HostOutcome]:
    """One row per host."""
    return [outcome_of(host, multi) for host, multi in sorted(results.items())]


def part_row(host: str, part: str, result: Result) -> HostOutcome:
    """The row of one part of a step: its data is the part's name (the step's own data,
    for programs, goes into the step's report)."""
    status = FAILED if result.failed else CHANGED if result.changed else OK
    return HostOutcome(host, status, _detail(result), {"part": part})


def part_outcomes(results: AggregatedResult, part: str | None = None, *,
                  hidden: Collection[str] = ()) -> list[HostOutcome]:
    """One row per part, for a task made of sub-tasks (``task.run(..., name=PART)``): a row
    per sub-task not in ``hidden`` (read-only helpers; shown when they fail), plus the task's
    own row when it failed by itself. A task without sub-tasks gives one row, named
    ``part`` (default: the task's name)."""
    rows = []
    for host, multi in sorted(results.items()):
        main, subs = multi[0], list(multi[1:])
        own = part or main.name or ""
        rows += [part_row(host, r.name or "", r) for r in subs
                 if r.failed or r.name not in hidden]
        if not subs or (main.failed and not any(r.failed for r in subs)):
            rows.append(part_row(host, own, main))
    return rows
