"""The egress probe's command and parser, and the diagnosis of why a node cannot get out."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubebastion.cloud import AWS, GENERIC
from kubebastion.cluster import EgressTarget
from kubebastion.egress.diagnose import (
    FORWARDING_OFF,
    NO_DEFAULT_ROUTE,
    NO_MASQUERADE,
    PROBE_SCRIPT,
    BastionEgress,
    NodeEgress,
    Probe,
    diagnose,
    egress_probe_command,
    nat_fixes,
    parse_egress_output,
)

TARGETS = (EgressTarget("198.19.0.1", 80), EgressTarget("dl.k8s.io", 443))
GOOD_BASTION = BastionEgress(ip_forward=1, masquerade=True, private_addresses=("198.18.1.1",))

# Captured shapes of the node command's output.
OK_OUTPUT = """@@kubebastion route
default via 198.18.1.1 dev eth0 
@@kubebastion probes
probe\t198.19.0.1:80\tok
probe\tdl.k8s.io:443\tok
"""  # noqa: W291
FAILED_OUTPUT = """@@kubebastion route
default via 198.18.1.1 dev eth0 
@@kubebastion probes
probe\t198.19.0.1:80\tfail\ttimed out
probe\tdl.k8s.io:443\tfail\tname does not resolve
"""  # noqa: W291


def node(via: str | None = "198.18.1.1", dev: str | None = "eth0",
         *results: bool) -> NodeEgress:
    results = results or (False,)
    return NodeEgress(via, dev, tuple(Probe(f"t{i}:80", ok, "" if ok else "timed out")
                                      for i, ok in enumerate(results)))


def test_command_probes_every_target_in_one_remote_command() -> None:
    command = egress_probe_command(TARGETS, 3.0)
    assert command.count("python3 -c") == 1
    assert "ip -4 route show default" in command
    assert command.endswith(" 3 198.19.0.1 80 dl.k8s.io 443; else echo python3-missing; fi")


def test_probe_script_is_valid_python_and_handles_no_targets() -> None:
    compile(PROBE_SCRIPT, "<probe>", "exec")
    out = subprocess.run([sys.executable, "-c", PROBE_SCRIPT, "1"], capture_output=True,
                         text=True, check=True, timeout=30)
    assert out.stdout == ""


def test_parse_ok_output() -> None:
    egress = parse_egress_output(OK_OUTPUT, TARGETS)
    assert (egress.default_via, egress.default_dev) == ("198.18.1.1", "eth0")
    assert [p.ok for p in egress.probes] == [True, True]
    assert egress.as_dict()["reached"] == "2/2"
    assert diagnose(egress, GOOD_BASTION) is None


def test_parse_failures_keep_the_reason() -> None:
    egress = parse_egress_output(FAILED_OUTPUT, TARGETS)
    assert [p.error for p in egress.probes] == ["timed out", "name does not resolve"]
    assert [p.resolved for p in egress.probes] == [True, False]
    assert diagnose(egress, GOOD_BASTION, node_name="k8s-w0") == (
        f"target unreachable: 198.19.0.1:80 (timed out); fix: {GENERIC.forwarding}; and "
        "name does not resolve on k8s-w0 (no nameserver in /etc/resolv.conf): dl.k8s.io:443 "
        f"(name does not resolve); fix: {GENERIC.dns}")


def test_missing_probe_lines_count_as_failures() -> None:
    egress = parse_egress_output("@@kubebastion route\n@@kubebastion probes\n", TARGETS)
    assert not egress.has_default_route
    assert [p.error for p in egress.probes] == ["no probe output"] * 2


def test_missing_python3_is_said_plainly() -> None:
    out = "@@kubebastion route\ndefault via 198.18.1.1 dev eth0\n@@kubebastion probes\n" \
          "python3-missing\n"
    assert diagnose(parse_egress_output(out, TARGETS), GOOD_BASTION) == (
        "cannot probe: python3 is missing on the node")


@pytest.mark.parametrize(("egress", "bastion", "expected"), [
    (node("198.18.1.1", "eth0", True), GOOD_BASTION, None),
    (node(None, None), GOOD_BASTION, f"{NO_DEFAULT_ROUTE}; fix: {GENERIC.route}"),
    (node("198.18.1.254", "eth0"), GOOD_BASTION,
     f"default route not via the bastion (198.18.1.254); fix: {GENERIC.route}"),
    (node(None, "eth0"), GOOD_BASTION,
     f"default route not via the bastion (dev eth0); fix: {GENERIC.route}"),
    (node(), BastionEgress(0, False, ("198.18.1.1",)), FORWARDING_OFF),
    (node(), BastionEgress(1, False, ("198.18.1.1",)), NO_MASQUERADE),
    (node(), GOOD_BASTION, f"target unreachable: t0:80 (timed out); fix: {GENERIC.forwarding}"),
    (node("198.18.1.1", "eth0", True, False), GOOD_BASTION,
     f"target unreachable: t1:80 (timed out); fix: {GENERIC.forwarding}"),
    (node("198.18.1.1", "eth0", True), BastionEgress(0, False, ()), None),
    (node(), None, f"target unreachable: t0:80 (timed out); fix: {GENERIC.forwarding}"),
], ids=["ok", "no-default-route", "other-gateway", "device-route", "not-forwarding",
        "no-masquerade", "target-down", "one-of-two-down",
        "reachable-without-our-nat-is-ok", "bastion-unknown"])
def test_diagnosis(egress: NodeEgress, bastion: BastionEgress | None,
                   expected: str | None) -> None:
    assert diagnose(egress, bastion) == expected


def test_forwarding_off_is_the_lab_before_state_message() -> None:
    assert FORWARDING_OFF == "bastion does not forward (net.ipv4.ip_forward=0)"


def test_inventory_private_address_counts_as_the_bastion() -> None:
    bastion = BastionEgress(1, True, ())
    assert diagnose(node("198.18.1.1"), bastion, "198.18.1.1") == (
        f"target unreachable: t0:80 (timed out); fix: {GENERIC.forwarding}")
    assert diagnose(node("198.18.1.9"), bastion, "198.18.1.1") == (
        f"default route not via the bastion (198.18.1.9); fix: {GENERIC.route}")


# --- name resolution apart from connection failures (issue 12, item 8) ---------------------

# Captured from a lab node whose resolver is broken (resolv.conf -> 127.0.0.53, nothing
# listening) while the IP target still answers, with the probe of this module.
BROKEN_DNS_OUTPUT = """@@kubebastion route
default via 198.18.1.1 dev eth0 
@@kubebastion resolvers
nameserver 127.0.0.53
@@kubebastion probes
probe\tinternet:80\tdns\tTemporary failure in name resolution\t
probe\t198.19.0.1:80\tok\t\t198.19.0.1
"""  # noqa: W291
NAMED_TARGETS = (EgressTarget("internet", 80), EgressTarget("198.19.0.1", 80))


def test_a_name_that_does_not_resolve_names_the_node_and_its_resolver() -> None:
    egress = parse_egress_output(BROKEN_DNS_OUTPUT, NAMED_TARGETS)
    assert egress.resolvers == ("127.0.0.53",)
    assert diagnose(egress, GOOD_BASTION, node_name="k8s-w1") == (
        "name does not resolve on k8s-w1 (resolver 127.0.0.53): internet:80 (Temporary "
        f"failure in name resolution); fix: {GENERIC.dns}")


def test_a_name_that_resolves_but_does_not_connect_says_so() -> None:
    out = BROKEN_DNS_OUTPUT.replace(
        "probe\tinternet:80\tdns\tTemporary failure in name resolution\t",
        "probe\tinternet:80\tfail\tConnection refused\t198.19.0.1")
    diagnosis = diagnose(parse_egress_output(out, NAMED_TARGETS), GOOD_BASTION,
                         node_name="k8s-w1")
    # Refused: the target answered, so there is nothing on the way to fix.
    assert diagnosis == ("target unreachable: internet:80 resolves to 198.19.0.1, "
                         "connection fails (Connection refused)")


def test_the_fix_is_the_bastion_platform_s() -> None:
    on_aws = BastionEgress(1, True, ("198.18.1.1",), AWS)
    assert diagnose(node(), on_aws) == (
        f"target unreachable: t0:80 (timed out); fix: {AWS.forwarding}")
    assert "source/destination check" in AWS.forwarding
    assert diagnose(node("10.0.1.1"), on_aws) == (
        f"default route not via the bastion (10.0.1.1); fix: {AWS.route}")
    assert on_aws.as_dict()["provider"] == "AWS"


def test_probe_script_tells_a_lookup_failure_from_a_refused_connection() -> None:
    """Run for real on this machine: an unresolvable name (.invalid, RFC 2606) and a
    closed local port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connecting is refused
        out = subprocess.run([sys.executable, "-c", PROBE_SCRIPT, "2", "no-such.invalid",
                              "80", "127.0.0.1", str(port)], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    lines = sorted(out.splitlines())
    assert lines[0] == f"probe\t127.0.0.1:{port}\tfail\tConnection refused\t127.0.0.1"
    assert lines[1].startswith("probe\tno-such.invalid:80\tdns\t")


@pytest.mark.parametrize(("diagnoses", "fixed"), [
    ([FORWARDING_OFF, ""], True),
    (["", NO_MASQUERADE], True),
    ([f"{NO_DEFAULT_ROUTE}; fix: route", ""], False),
    (["bastion does not forward (net.ipv4.ip_forward=2)"], False),
    ([], False),
], ids=["forwarding off", "no masquerade", "route", "odd forwarding value", "nothing"])
def test_nat_fixes_exactly_the_bastions_own_forwarding_and_masquerade(
        diagnoses: list[str], fixed: bool) -> None:
    """The command line's ``hint: `invoke nat``` is keyed on these diagnoses."""
    assert nat_fixes(diagnoses) is fixed
