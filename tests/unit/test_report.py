"""The one translation from Nornir results to report rows (docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass

from nornir.core.inventory import Host
from nornir.core.task import AggregatedResult, MultiResult, Result

from kubebastion.errors import StepError
from kubebastion.report import CHANGED, FAILED, OK, outcomes, part_outcomes


@dataclass(frozen=True)
class Found:
    summary: str
    value: int = 1

    def as_dict(self) -> dict[str, object]:
        return {"summary": self.summary, "value": self.value}


def aggregated(name: str, per_host: dict[str, list[Result]]) -> AggregatedResult:
    results = AggregatedResult(name)
    for host, items in per_host.items():
        multi = MultiResult(name)
        multi.extend(items)
        results[host] = multi
    return results


def result(name: str, **kwargs: object) -> Result:
    return Result(host=Host("h1"), name=name, **kwargs)  # type: ignore[arg-type]


def test_rows_say_the_failure_the_change_else_the_summary() -> None:
    rows = outcomes(aggregated("step", {
        "a": [result("step", result=Found("already there"))],
        "b": [result("step", changed=True, diff="+added", result=Found("done"))],
        "c": [result("step", failed=True, result=Found("sudo failed: no password"))],
        "d": [result("step", failed=True, exception=StepError("d: cannot go on"))],
    }))
    assert [(r.host, r.status, r.detail) for r in rows] == [
        ("a", OK, "already there"),
        ("b", CHANGED, "+added"),
        ("c", FAILED, "sudo failed: no password"),
        ("d", FAILED, "d: cannot go on"),
    ]
    assert rows[0].data == {"summary": "already there", "value": 1}


def test_a_failed_result_keeps_its_data_and_its_diff_is_not_the_message() -> None:
    rows = outcomes(aggregated("step", {
        "a": [result("step", failed=True, changed=True, diff="3 hosts, 2 changes",
                     result=Found("the playbook failed on k8s-w0"))]}))
    assert rows[0].detail == "the playbook failed on k8s-w0"
    assert rows[0].data["value"] == 1


def test_part_rows_one_per_sub_task_hiding_read_only_helpers() -> None:
    rows = part_outcomes(aggregated("prepare", {"bastion": [
        result("prepare", result=Found("ready")),
        result("facts", result=Found("home /home/u")),
        result("source", changed=True, diff="cloned v2.31.0"),
        result("venv", result=Found("built from these requirements")),
    ]}), "prepare", hidden=("facts",))
    assert [(r.data["part"], r.status, r.detail) for r in rows] == [
        ("source", CHANGED, "cloned v2.31.0"),
        ("venv", OK, "built from these requirements"),
    ]


def test_part_rows_show_a_hidden_helper_that_failed_and_a_task_failing_by_itself() -> None:
    failed_helper = part_outcomes(aggregated("prepare", {"bastion": [
        result("prepare", failed=True, exception=StepError("home unknown")),
        result("facts", failed=True, exception=StepError("home unknown")),
    ]}), hidden=("facts",))
    assert [(r.data["part"], r.status) for r in failed_helper] == [("facts", FAILED)]
    failed_itself = part_outcomes(aggregated("prepare", {"bastion": [
        result("prepare", failed=True, exception=StepError("python 3.9 is too old")),
        result("facts", result=Found("home /home/u")),
    ]}), "prepare", hidden=("facts",))
    assert [(r.data["part"], r.detail) for r in failed_itself] == [
        ("prepare", "python 3.9 is too old")]


def test_a_task_without_sub_tasks_is_one_row_named_after_the_part() -> None:
    rows = part_outcomes(aggregated("authorized_keys", {
        "k8s-w0": [result("authorized_keys", changed=True, diff="authorized the key")],
        "k8s-w1": [result("authorized_keys", result=Found("the key is authorized"))],
    }))
    assert [(r.host, r.data, r.detail) for r in rows] == [
        ("k8s-w0", {"part": "authorized_keys"}, "authorized the key"),
        ("k8s-w1", {"part": "authorized_keys"}, "the key is authorized"),
    ]
