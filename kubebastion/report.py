"""Turn Nornir's results into per-host outcomes people and programs can read.

A failure's message is the exception's own message for kubebastion errors (they are
written for operators) and ``Type: message`` otherwise — never a traceback with locals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nornir.core.task import AggregatedResult, MultiResult

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


def outcome_of(host: str, multi: MultiResult) -> HostOutcome:
    """Summarise one host's results (the first result is the task itself)."""
    main = multi[0]
    if multi.failed:
        failed = next((r for r in multi if r.failed), main)
        if failed.exception is not None:
            detail = describe_exception(failed.exception)
        else:
            detail = redact(str(failed.diff or failed.result or "failed"))
        data = _data(main.result)
        return HostOutcome(host, FAILED, detail, data)
    if main.result is None and getattr(main, "skipped", False):
        return HostOutcome(host, SKIPPED)
    status = CHANGED if multi.changed else OK
    return HostOutcome(host, status, redact(str(main.diff or "")), _data(main.result))


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
    return [outcome_of(host, multi) for host, multi in sorted(results.items())]
