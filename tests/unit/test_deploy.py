"""The deploy sequence's pure parts: step selection, status roll-up, the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kubebastion.deploy import (
    FETCH,
    KUBESPRAY,
    NAT,
    STEPS,
    DeployReport,
    StepReport,
    select_steps,
    step_status,
)
from kubebastion.errors import ConfigError
from kubebastion.report import CHANGED, FAILED, OK, SKIPPED, HostOutcome

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "deploy-report.schema.json")
                   .read_text())


@pytest.mark.parametrize(
    ("steps", "skip", "expected"),
    [("", "", STEPS), ("nat,egress", "", ("nat", "egress")),
     ("egress,nat", "", ("nat", "egress")), ("", "kubespray,nat",
                                             tuple(s for s in STEPS if s not in
                                                   ("kubespray", "nat")))],
    ids=["all", "subset", "order-is-the-flows", "skip"],
)
def test_select_steps(steps: str, skip: str, expected: tuple[str, ...]) -> None:
    assert select_steps(steps, skip) == expected


def test_unknown_step_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown step.*kubspray"):
        select_steps("kubspray")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [([OK, OK], OK), ([OK, CHANGED], CHANGED), ([CHANGED, FAILED], FAILED), ([], OK)],
    ids=["all-ok", "one-changed", "one-failed", "no-hosts"])
def test_step_status(statuses: list[str], expected: str) -> None:
    rows = [HostOutcome(f"h{i}", s) for i, s in enumerate(statuses)]
    assert step_status(rows) == expected


def test_report_validates_against_the_schema_and_names_the_failed_step() -> None:
    report = DeployReport("lab", dry_run=False, seconds=12.5, context="lab",
                          kubeconfig="/home/u/.kube/config")
    report.steps = [
        StepReport(NAT, CHANGED, 0.4, [HostOutcome("bastion", CHANGED, "diff", {"x": 1})]),
        StepReport(KUBESPRAY, FAILED, 3.0, [HostOutcome("k8s-w0", FAILED, "boom")], "boom",
                   {"playbook": {"exit_code": 2}}),
        StepReport(FETCH, SKIPPED, detail="not run: step kubespray failed"),
    ]
    document = report.as_dict()
    jsonschema.validate(document, SCHEMA)
    assert document["failed_step"] == KUBESPRAY and document["ok"] is False
    assert document["next"] == ""
    report.steps[1].status = OK
    assert report.as_dict()["next"].startswith("kubectl --context lab get nodes")


def test_schema_rejects_an_unknown_status() -> None:
    document = DeployReport("lab", dry_run=True).as_dict()
    document["steps"] = [{"name": NAT, "status": "maybe", "seconds": 0, "detail": "",
                          "hosts": []}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)
