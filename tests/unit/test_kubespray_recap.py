"""The preflight's per-host rows, from captured real kubespray v2.31.0 output."""

from __future__ import annotations

from pathlib import Path

from kubebastion.kubespray.playbook import (
    PlaybookOutcome,
    describe_failure,
    parse_playbook_output,
)
from kubebastion.kubespray.recap import recap_rows

CASES = Path(__file__).parent / "cases" / "kubespray"


def outcome(case: str, exit_code: int) -> PlaybookOutcome:
    text = (CASES / f"real_v2.31.0_{case}.txt").read_text()
    return PlaybookOutcome(exit_code, parse_playbook_output(text), "/r.log", "/l.log", 30.0)


def test_real_preflight_passes_on_every_node_and_changes_nothing() -> None:
    rows = recap_rows(outcome("preflight_ok", 0), ["k8s-m0", "k8s-w0", "k8s-w1", "absent"],
                      "preflight")
    assert [(r.host, r.status) for r in rows] == [
        ("k8s-m0", "ok"), ("k8s-w0", "ok"), ("k8s-w1", "ok")]
    assert rows[0].detail == "ok=73 changed=0 skipped=62"
    assert rows[0].data["recap"]["failed"] == 0 and rows[0].data["part"] == "preflight"


def test_real_ip_assertion_names_the_host_the_task_and_its_message() -> None:
    ran = outcome("ip_mismatch", 2)
    rows = {r.host: r for r in recap_rows(ran, ["k8s-m0", "k8s-w0", "k8s-w1"], "preflight")}
    assert rows["k8s-m0"].status == rows["k8s-w0"].status == "ok"
    failed = rows["k8s-w1"]
    task = "kubernetes/preinstall : Stop if ip var does not match local ips"
    assert failed.status == "failed" and failed.data["task"] == task
    assert failed.data["message"].endswith("do not contain '198.18.1.250'")
    assert failed.detail.startswith(f"failed at task [{task}]: IPv4: '['198.18.1.101']'")
    text = describe_failure(ran.parsed, 2, "/r.log", 60)
    assert f"k8s-w1 failed at task [{task}]" in text
