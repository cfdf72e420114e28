"""NAT planning on captured bastion outputs: parse, plan, diff, remove, refuse bad input."""

from __future__ import annotations

import base64
import ipaddress
import shlex
from dataclasses import replace
from typing import Any

import pytest

from kubebastion.cluster import Cluster, RawHost, build_cluster
from kubebastion.errors import InventoryError, StepError
from kubebastion.nat.plan import (
    MANAGED_FILES,
    NFT_FILE,
    OURS_MARK,
    STATE_FILE,
    SYSCTL_DROPIN,
    UNIT_FILE,
    UP_SCRIPT,
    WANTS_DIR,
    WANTS_LINK,
    BastionState,
    RemoteFile,
    apply_command,
    change_script,
    enable_command,
    file_writes,
    files_diff,
    forward_rules,
    masquerade_rules,
    parse_state,
    plan_nat,
    remove_command,
    render_table,
    rules_diff,
    split_sections,
    state_command,
)

# Captured from `sh -c "$(state_command(files=()))"` in a namespace shaped like the lab
# bastion (veth pair wan0/priv0, FORWARD policy DROP), before kubebastion ran.
FRESH = """
@@kubebastion ip_forward
0

@@kubebastion links
1: lo: <LOOPBACK> mtu 65536 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: priv0@wan0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 1a:a7:95:91:52:8b brd ff:ff:ff:ff:ff:ff
3: wan0@priv0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 86:ae:de:5b:25:c8 brd ff:ff:ff:ff:ff:ff

@@kubebastion addresses
2: priv0    inet 198.18.1.1/24 scope global priv0\\       valid_lft forever preferred_lft forever
3: wan0    inet 198.18.2.2/24 scope global wan0\\       valid_lft forever preferred_lft forever

@@kubebastion default_route
default via 198.18.2.1 dev wan0 

@@kubebastion nft
present

@@kubebastion table

@@kubebastion iptables
present
-P FORWARD DROP

@@kubebastion forward_chain
<missing>

@@kubebastion systemd

@@kubebastion wants_link
"""  # noqa: E501, W291

# The same namespace after nat-up.sh ran (nft prints the table back like this).
APPLIED_TABLE = """table ip kubebastion_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 198.18.1.0/24 oifname "wan0" masquerade comment "kubebastion"
	}
}"""
APPLIED_CHAIN = (
    "-N KUBEBASTION-FWD",
    "-A KUBEBASTION-FWD -s 198.18.1.0/24 -o wan0 -j ACCEPT",
    "-A KUBEBASTION-FWD -d 198.18.1.0/24 -i wan0 -m conntrack --ctstate RELATED,ESTABLISHED"
    " -j ACCEPT",
)


def lab_cluster(**bastion_data: Any) -> Cluster:
    nodes = [RawHost("k8s-m0", "198.18.1.10", "kblab", 22,
                     frozenset({"control_plane", "nodes"}), {"jump_host": "bastion"}),
             RawHost("k8s-w0", "198.18.1.100", "kblab", 22,
                     frozenset({"workers", "nodes"}), {"jump_host": "bastion"})]
    bastion = RawHost("bastion", "198.18.0.2", "kblab", 22, frozenset({"bastion"}),
                      {"private_address": "198.18.1.1", **bastion_data})
    return build_cluster([bastion, *nodes], {"private_cidr": "198.18.1.0/24",
                                             "egress_targets": ["198.19.0.1:80"]})


def applied(state: BastionState, cluster: Cluster) -> BastionState:
    """What the bastion looks like after configure_nat wrote and applied ``plan``."""
    plan = plan_nat(cluster, state)
    return replace(state, ip_forward=1, table=APPLIED_TABLE, forward_jump=True,
                   forward_chain=APPLIED_CHAIN, wants_link=UNIT_FILE, wants_dir=True,
                   files={p: RemoteFile(text, mode) for p, (text, mode) in plan.files.items()})


@pytest.fixture
def fresh() -> BastionState:
    return parse_state(FRESH)


def test_parse_state_reads_the_captured_bastion(fresh: BastionState) -> None:
    assert fresh.ip_forward == 0
    assert fresh.interfaces == ("lo", "priv0", "wan0")
    assert [(i, str(a)) for i, a in fresh.addresses] == [("priv0", "198.18.1.1/24"),
                                                         ("wan0", "198.18.2.2/24")]
    assert (fresh.default_via, fresh.default_dev) == ("198.18.2.1", "wan0")
    assert fresh.nft_present and fresh.iptables_present
    assert fresh.table is None
    assert fresh.forward_policy == "DROP"
    assert not fresh.forward_jump
    assert fresh.forward_chain is None
    assert not fresh.systemd
    assert fresh.wants_link is None


def test_parse_state_reads_files_with_mode() -> None:
    body = base64.b64encode(b"net.ipv4.ip_forward = 1\n").decode()
    out = FRESH + (f"\n@@kubebastion file {SYSCTL_DROPIN}\n644\n{body}\n"
                   f"@@kubebastion file {NFT_FILE}\n<missing>\n")
    state = parse_state(out)
    assert state.files[SYSCTL_DROPIN] == RemoteFile("net.ipv4.ip_forward = 1\n", 0o644)
    assert state.files[NFT_FILE] is None


def test_parse_state_rejects_truncated_output() -> None:
    with pytest.raises(ValueError, match="lacks"):
        parse_state("@@kubebastion ip_forward\n1\n")


def test_state_command_quotes_paths_and_marks_every_file() -> None:
    command = state_command()
    for path in MANAGED_FILES:
        assert shlex.quote(f"file {path}") in command
    assert "flush" not in command  # reading never changes anything


def test_split_sections_tolerates_output_without_trailing_newline() -> None:
    assert split_sections("@@kubebastion a\nx\n@@kubebastion b\n") == {"a": "x", "b": ""}


def test_plan_uses_the_default_route_interface_and_adds_the_jump_when_forward_drops(
        fresh: BastionState) -> None:
    plan = plan_nat(lab_cluster(), fresh)
    assert (plan.uplink, plan.private_cidr, plan.forward_jump) == (
        "wan0", "198.18.1.0/24", True)
    assert plan.ip_forward_before == 0
    assert set(plan.files) == set(MANAGED_FILES)
    assert plan.files[UP_SCRIPT][1] == 0o755
    assert "FORWARD_JUMP=1" in plan.files[UP_SCRIPT][0]
    assert "net.ipv4.ip_forward = 1" in plan.files[SYSCTL_DROPIN][0]
    assert "ip_forward_before=0" in plan.files[STATE_FILE][0]


def test_plan_without_forward_drop_adds_no_jump(fresh: BastionState) -> None:
    plan = plan_nat(lab_cluster(), replace(fresh, forward_policy="ACCEPT"))
    assert not plan.forward_jump
    assert "FORWARD_JUMP=0" in plan.files[UP_SCRIPT][0]
    assert "iptables" not in rules_diff(replace(fresh, forward_policy="ACCEPT"), plan)


def test_rendered_nft_file_replaces_only_our_table(fresh: BastionState) -> None:
    text = plan_nat(lab_cluster(), fresh).files[NFT_FILE][0]
    statements = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert statements[:2] == ["table ip kubebastion_nat", "delete table ip kubebastion_nat"]
    assert "flush" not in "\n".join(statements)
    assert text.endswith(render_table("198.18.1.0/24", "wan0"))


def test_unit_starts_after_nftables_and_runs_the_script(fresh: BastionState) -> None:
    unit = plan_nat(lab_cluster(), fresh).files[UNIT_FILE][0]
    after = next(line for line in unit.splitlines() if line.startswith("After="))
    assert {"nftables.service", "network-pre.target"} <= set(after[6:].split())
    assert f"ExecStart={UP_SCRIPT}" in unit.splitlines()
    assert {"Type=oneshot", "RemainAfterExit=yes", "WantedBy=multi-user.target"} <= set(
        unit.splitlines())


def test_named_uplink_wins_over_the_default_route(fresh: BastionState) -> None:
    state = replace(fresh, interfaces=(*fresh.interfaces, "wan1"))
    assert plan_nat(lab_cluster(uplink="wan1"), state).uplink == "wan1"


def test_unknown_uplink_names_it_and_the_interfaces_that_exist(fresh: BastionState) -> None:
    with pytest.raises(StepError) as info:
        plan_nat(lab_cluster(uplink="eth9"), fresh)
    message = str(info.value)
    assert "'eth9'" in message and "lo, priv0, wan0" in message and "data.uplink" in message


def test_no_default_route_and_no_uplink_is_refused(fresh: BastionState) -> None:
    with pytest.raises(StepError, match="no default route"):
        plan_nat(lab_cluster(), replace(fresh, default_dev=None, default_via=None))


# Captured from the single-NIC lab bastion (lab.up(single_nic=True)): one private NIC,
# the default route through it to the subnet's router.
SINGLE_NIC_ADDRESSES = "7: priv0    inet 198.18.1.1/24 scope global priv0\\       valid_lft forever"
SINGLE_NIC_TABLE = """table ip kubebastion_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 198.18.1.0/24 ip daddr != 198.18.1.0/24 oifname "priv0" masquerade comment "kubebastion"
	}
}"""  # noqa: E501


def single_nic_state(fresh: BastionState) -> BastionState:
    return replace(fresh, interfaces=("lo", "op0", "priv0"), default_dev="priv0",
                   default_via="198.18.1.2",
                   addresses=parse_state(FRESH.replace(
                       "@@kubebastion addresses\n",
                       f"@@kubebastion addresses\n{SINGLE_NIC_ADDRESSES}\n")).addresses[:1])


def test_single_nic_masquerades_only_what_leaves_the_private_network(
        fresh: BastionState) -> None:
    """The uplink is the private interface (a cloud bastion with a 1:1 NAT address):
    masquerade and FORWARD rules exclude private destinations, so private hosts talking
    through the bastion keep their addresses."""
    state = single_nic_state(fresh)
    plan = plan_nat(lab_cluster(), state)
    assert (plan.uplink, plan.single_nic, plan.forward_jump) == ("priv0", True, True)
    assert plan.table.strip() == SINGLE_NIC_TABLE
    assert plan.as_dict()["single_nic"] is True
    script = plan.files[UP_SCRIPT][0]
    assert "iptables -A KUBEBASTION-FWD -s 198.18.1.0/24 ! -d 198.18.1.0/24 -o priv0" in script
    assert ("iptables -A KUBEBASTION-FWD ! -s 198.18.1.0/24 -d 198.18.1.0/24 -i priv0 -m "
            "conntrack") in script
    applied = replace(state, ip_forward=1, table=SINGLE_NIC_TABLE, forward_jump=True,
                      forward_chain=("-N KUBEBASTION-FWD", *(
                          f"-A KUBEBASTION-FWD {rule}" for rule in forward_rules(
                              "198.18.1.0/24", "priv0", single_nic=True))))
    assert rules_diff(applied, plan) == ""
    assert masquerade_rules(SINGLE_NIC_TABLE, "198.18.1.0/24")


def test_two_nics_keep_the_plain_rule(fresh: BastionState) -> None:
    plan = plan_nat(lab_cluster(), fresh)
    assert not plan.single_nic and "daddr" not in plan.table


def test_missing_nft_still_plans_the_nat_it_will_install_for(fresh: BastionState) -> None:
    """nft is installed by the step first (kubebastion.nat.packages,
    tests/unit/test_nat_packages.py); the plan does not depend on it."""
    assert plan_nat(lab_cluster(), replace(fresh, nft_present=False)) == plan_nat(
        lab_cluster(), fresh)


def test_private_cidr_not_holding_the_nodes_is_rejected_before_any_ssh() -> None:
    hosts = [RawHost("bastion", "198.18.0.2", "kblab", 22, frozenset({"bastion"}), {}),
             RawHost("k8s-m0", "198.18.1.10", "kblab", 22,
                     frozenset({"control_plane", "nodes"}), {"jump_host": "bastion"})]
    with pytest.raises(InventoryError) as info:
        build_cluster(hosts, {"private_cidr": "198.18.7.0/24"})
    assert info.value.problems == [
        "host 'k8s-m0': ip 198.18.1.10 is outside private_cidr 198.18.7.0/24"]


def test_first_run_diff_shows_files_sysctl_table_and_forward_jump(
        fresh: BastionState) -> None:
    plan = plan_nat(lab_cluster(), fresh)
    files = files_diff(fresh, plan)
    rules = rules_diff(fresh, plan)
    for path in MANAGED_FILES:
        assert f"+++ {path}" in files
    assert f"+{WANTS_LINK} -> {UNIT_FILE}" in files
    assert "-net.ipv4.ip_forward = 0\n+net.ipv4.ip_forward = 1" in rules
    assert '+\t\tip saddr 198.18.1.0/24 oifname "wan0" masquerade comment "kubebastion"' in rules
    assert "+-A FORWARD -j KUBEBASTION-FWD" in rules


def test_second_run_sees_no_difference(fresh: BastionState) -> None:
    cluster = lab_cluster()
    done = applied(fresh, cluster)
    plan = plan_nat(cluster, done)
    assert files_diff(done, plan) == ""
    assert rules_diff(done, plan) == ""
    assert plan.ip_forward_before == 0  # from the state file, not today's ip_forward=1


def test_listing_with_handles_compares_equal(fresh: BastionState) -> None:
    cluster = lab_cluster()
    with_handles = APPLIED_TABLE.replace("{\n", "{ # handle 3\n", 1).replace(
        '"kubebastion"', '"kubebastion" # handle 2')
    done = replace(applied(fresh, cluster), table=with_handles)
    assert rules_diff(done, plan_nat(cluster, done)) == ""


def test_drift_is_seen(fresh: BastionState) -> None:
    cluster = lab_cluster()
    done = applied(fresh, cluster)
    rebooted = replace(done, ip_forward=0, table=None, forward_jump=False,
                       forward_chain=None, forward_policy="ACCEPT")
    rules = rules_diff(rebooted, plan_nat(cluster, rebooted))
    assert "net.ipv4.ip_forward = 1" in rules and "masquerade" in rules
    changed_mode = replace(done, files={**done.files,
                                        UP_SCRIPT: replace(done.files[UP_SCRIPT], mode=0o644)})
    assert "mode /etc/kubebastion/nat-up.sh: 644 -> 755" in files_diff(
        changed_mode, plan_nat(cluster, changed_mode))


def test_remove_undoes_exactly_what_was_added(fresh: BastionState) -> None:
    done = applied(fresh, lab_cluster())
    command = remove_command(done)
    assert "nft delete table ip kubebastion_nat" in command
    assert "iptables -D FORWARD -j KUBEBASTION-FWD" in command
    assert "iptables -X KUBEBASTION-FWD" in command
    assert "sysctl -q -w net.ipv4.ip_forward=0" in command  # it was 0 before us
    assert "flush ruleset" not in command and "iptables-restore" not in command
    for path in (*MANAGED_FILES, WANTS_LINK):
        assert shlex.quote(path) in command
    diff = files_diff(done, None) + rules_diff(done, None)
    assert "+net.ipv4.ip_forward = 0" in diff and "--- /etc/kubebastion/nat.nft" in diff


def test_remove_keeps_forwarding_that_was_on_before_us(fresh: BastionState) -> None:
    done = applied(replace(fresh, ip_forward=1), lab_cluster())
    assert "ip_forward=0" not in remove_command(done)
    assert "ip_forward" not in rules_diff(done, None)


def test_remove_takes_the_wants_folder_only_if_our_first_run_made_it(
        fresh: BastionState) -> None:
    """``systemctl enable`` by hand (our symlink) may create multi-user.target.wants;
    removing it afterwards is ours to do only when it was not there before us."""
    cluster = lab_cluster()
    made = applied(replace(fresh, wants_dir=False), cluster)
    assert "wants_dir_created=1" in made.files[STATE_FILE].content
    assert f"rmdir {shlex.quote(WANTS_DIR)} " in remove_command(made)
    # sticky: the folder exists on the next run, the record stays
    assert plan_nat(cluster, made).files[STATE_FILE][0] == made.files[STATE_FILE].content
    there = applied(replace(fresh, wants_dir=True), cluster)
    assert "wants_dir_created=0" in there.files[STATE_FILE].content
    assert f"rmdir {shlex.quote(WANTS_DIR)}" not in remove_command(there)


def test_parse_state_reads_whether_the_wants_folder_exists() -> None:
    assert parse_state(FRESH + "\n@@kubebastion wants_dir\n").wants_dir is False
    assert parse_state(FRESH + "\n@@kubebastion wants_dir\npresent\n").wants_dir is True


def test_remove_on_a_clean_bastion_has_nothing_to_do(fresh: BastionState) -> None:
    assert files_diff(fresh, None) + rules_diff(fresh, None) == ""


def test_masquerade_rules_counts_only_rules_for_the_cidr() -> None:
    ruleset = APPLIED_TABLE + """
table ip nat {
	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 198.18.3.0/24 oifname != "wan0" counter packets 0 bytes 0 masquerade
	}
}"""
    assert masquerade_rules(ruleset, "198.18.1.0/24") == [
        'ip saddr 198.18.1.0/24 oifname "wan0" masquerade comment "kubebastion"']
    assert masquerade_rules(None, "198.18.1.0/24") == []


def test_ipv6_private_network_is_refused(fresh: BastionState) -> None:
    cluster = replace(lab_cluster(), private_cidr=ipaddress.ip_network("2001:db8::/64"))
    with pytest.raises(StepError, match="IPv4"):
        plan_nat(cluster, fresh)


def test_listing_indented_otherwise_compares_equal(fresh: BastionState) -> None:
    cluster = lab_cluster()
    spaced = APPLIED_TABLE.replace("\t", "    ")
    done = replace(applied(fresh, cluster), table=spaced)
    assert rules_diff(done, plan_nat(cluster, done)) == ""


def test_first_run_writes_every_file_in_order_without_backups(fresh: BastionState) -> None:
    plan = plan_nat(lab_cluster(), fresh)
    writes = file_writes(fresh, plan)
    assert [w.path for w in writes] == list(MANAGED_FILES)  # the unit last
    assert all(not w.backup and w.data == plan.files[w.path][0].encode()
               and w.mode == plan.files[w.path][1] for w in writes)
    assert change_script(fresh, plan) == f"{enable_command()}\n{apply_command()}"


def test_second_run_writes_nothing_and_runs_nothing(fresh: BastionState) -> None:
    cluster = lab_cluster()
    done = applied(fresh, cluster)
    plan = plan_nat(cluster, done)
    assert file_writes(done, plan) == ()
    assert change_script(done, plan) == ""


def test_only_the_file_that_differs_is_written_and_a_foreign_one_backed_up(
        fresh: BastionState) -> None:
    cluster = lab_cluster()
    done = applied(fresh, cluster)
    theirs = replace(done, files={**done.files, SYSCTL_DROPIN: RemoteFile("x = 1\n", 0o644),
                                  UP_SCRIPT: RemoteFile(f"# {OURS_MARK}: old\n", 0o755)})
    plan = plan_nat(cluster, theirs)
    writes = {w.path: w.backup for w in file_writes(theirs, plan)}
    assert writes == {SYSCTL_DROPIN: True, UP_SCRIPT: False}
    assert change_script(theirs, plan) == ""  # same unit, same live rules


def test_a_changed_mode_alone_is_written(fresh: BastionState) -> None:
    cluster = lab_cluster()
    done = applied(fresh, cluster)
    current = done.files[UP_SCRIPT]
    assert current is not None
    loose = replace(done, files={**done.files, UP_SCRIPT: RemoteFile(current.content, 0o777)})
    assert [w.path for w in file_writes(loose, plan_nat(cluster, loose))] == [UP_SCRIPT]


def test_a_new_unit_file_is_enabled_again(fresh: BastionState) -> None:
    cluster = lab_cluster()
    done = applied(fresh, cluster)
    old_unit = replace(done, files={**done.files, UNIT_FILE: RemoteFile("old", 0o644)})
    assert change_script(old_unit, plan_nat(cluster, old_unit)) == enable_command()
