"""The record of the last successful playbook run and the decision to run again."""

from __future__ import annotations

import pytest

from kubebastion.kubespray import applied
from kubebastion.kubespray.inventory import GROUP_VARS_FILE, HOSTS_FILE
from kubebastion.kubespray.playbook import (
    HostRecap,
    PlaybookOutcome,
    parse_playbook_output,
)

INVENTORY = {HOSTS_FILE: "all: {}\n", GROUP_VARS_FILE: "{}\n"}
BASE: dict[str, object] = {
    "source_identity": "sha256:abc", "requirements_sha256": "def", "inventory": INVENTORY,
    "kubespray_vars": {}, "api": ":6443", "checkout": "/home/u/kubespray"}
DESIRED = applied.desired_state(**BASE)  # type: ignore[arg-type]


def test_the_same_state_needs_no_run() -> None:
    recorded = applied.parse_record(applied.record_text(DESIRED).encode())
    assert recorded == DESIRED
    assert applied.reasons_to_run(recorded, DESIRED) == []


@pytest.mark.parametrize(("change", "reason"), [
    ({"source_identity": "sha256:new"}, "the kubespray source changed"),
    ({"requirements_sha256": "new"}, "kubespray's requirements.txt changed"),
    ({"inventory": {HOSTS_FILE: "all: {hosts: {}}\n", GROUP_VARS_FILE: "{}\n"}},
     "the rendered inventory (hosts.yaml) changed"),
    ({"inventory": {HOSTS_FILE: "all: {}\n", GROUP_VARS_FILE: "kube_version: 1.34.0\n"},
      "kubespray_vars": {"kube_version": "1.34.0"}}, "kubespray_vars changed"),
    ({"inventory": {HOSTS_FILE: "all: {}\n", GROUP_VARS_FILE: "kube_apiserver_port: 8443\n"},
      "api": ":8443"}, "api_port or api_address changed"),
    ({"inventory": {HOSTS_FILE: "all: {}\n", GROUP_VARS_FILE: "# new comment\n{}\n"}},
     "the rendered inventory changed"),
    ({"requirements_sha256": ""}, "kubespray's requirements.txt changed"),  # dry run: unknown
], ids=["source", "requirements", "hosts", "vars", "api", "rendering", "unknown"])
def test_each_change_is_named(change: dict[str, object], reason: str) -> None:
    desired = applied.desired_state(**{**BASE, **change})  # type: ignore[arg-type]
    assert applied.reasons_to_run(DESIRED, desired) == [
        f"{reason} since the last successful run"]


@pytest.mark.parametrize("data", [None, b"", b"not json", b"[1, 2]"],
                         ids=["absent", "empty", "garbage", "not-a-mapping"])
def test_no_usable_record_means_run(data: bytes | None) -> None:
    assert applied.reasons_to_run(applied.parse_record(data), DESIRED) == [applied.NO_RECORD]


RECAP = ("PLAY RECAP ***********************************************************\n"
         "k8s-m0                     : ok=30   changed=2    unreachable=0    failed=0    "
         "skipped=1    rescued=0    ignored=0\n"
         "k8s-w0                     : ok=20   changed=1    unreachable=0    failed={failed}    "
         "skipped=1    rescued=0    ignored=0\n")


def outcome(exit_code: int | None, text: str) -> PlaybookOutcome:
    return PlaybookOutcome(exit_code, parse_playbook_output(text), "r.log", "l.log", 1.0)


def test_only_a_full_clean_recap_counts_as_success() -> None:
    hosts = ["k8s-m0", "k8s-w0"]
    assert applied.complete_success(outcome(0, RECAP.format(failed=0)), hosts)
    assert not applied.complete_success(outcome(2, RECAP.format(failed=1)), hosts)
    assert not applied.complete_success(outcome(0, RECAP.format(failed=1)), hosts)
    assert not applied.complete_success(outcome(124, RECAP.format(failed=0)), hosts)
    assert not applied.complete_success(outcome(0, ""), hosts)  # output cut: no recap
    assert not applied.complete_success(outcome(0, RECAP.format(failed=0)),
                                        [*hosts, "k8s-w1"])  # a host missing from it
    unreachable = outcome(0, RECAP.format(failed=0))
    unreachable.parsed.recap["k8s-w0"] = HostRecap(ok=1, unreachable=1)
    assert not applied.complete_success(unreachable, hosts)


def test_extra_vars_are_part_of_the_recorded_state() -> None:
    from kubebastion.kubespray import applied
    from kubebastion.kubespray.inventory import GROUP_VARS_FILE, HOSTS_FILE

    def state(*extra: str) -> dict[str, str]:
        return applied.desired_state(source_identity="s", requirements_sha256="r",
                                     inventory={HOSTS_FILE: "h", GROUP_VARS_FILE: "g"},
                                     kubespray_vars={}, api=":6443", checkout="/k",
                                     extra_vars=extra)
    assert applied.reasons_to_run(state("a=1"), state("a=1")) == []
    assert applied.reasons_to_run(state("a=1"), state("a=2")) == [
        "the extra vars (-e, the extra_vars setting) changed since the last successful run"]
