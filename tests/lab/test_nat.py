"""`invoke nat` against the lab, for real (every "Done when" item of issue 3 about NAT).

The bastion starts like a ufw/docker host: iptables FORWARD policy DROP, plus someone
else's NAT rules (an iptables-nft MASQUERADE and a native nft table) that must survive
`nat` and `nat --remove`. Tests run in file order and build on each other. The module
ends with `nat --remove` and the lab's own starting point (FORWARD ACCEPT, no foreign
rules), because other modules share the lab.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import lab
from kubebastion.nat.plan import (
    MANAGED_FILES,
    NFT_TABLE,
    UNIT_FILE,
    UP_SCRIPT,
    WANTS_LINK,
    masquerade_rules,
)
from tests.lab.helpers import invoke

pytestmark = pytest.mark.lab

INET_URL = "http://198.19.0.1:80/"
UPLINK_ADDRESS = "198.18.2.2"
PRIVATE_CIDR = "198.18.1.0/24"
FOREIGN_CIDR = "198.18.3.0/24"
FOREIGN_NFT = f"""table ip someone_else_nat {{
	chain postrouting {{
		type nat hook postrouting priority srcnat + 10; policy accept;
		ip saddr {FOREIGN_CIDR} oifname "wan0" masquerade
	}}
}}
"""
FOREIGN_IPTABLES = [
    "-t",
    "nat",
    "-A",
    "POSTROUTING",
    "-s",
    FOREIGN_CIDR,
    "!",
    "-o",
    "wan0",
    "-j",
    "MASQUERADE",
]
TIMINGS: dict[str, float] = {}


def nat(
    state: lab.LabState, *args: str, config: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`invoke nat --json ...`; returns the process and the bastion's row."""
    started = time.monotonic()
    result = invoke("nat", "--json", "--config", str(config or state.nornir_config), *args)
    TIMINGS[" ".join(("nat", *args))] = time.monotonic() - started
    rows = {}
    if result.stdout.strip().startswith("{"):
        rows = {r["host"]: r for r in json.loads(result.stdout)["hosts"]}
    return result, rows.get("bastion", {})


def on_bastion(
    state: lab.LabState, script: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run as root inside the bastion: its network namespace and its private /etc."""
    return bastion_exec(state, ["sh", "-c", script], check=check)


def bastion_exec(state: lab.LabState, argv: list[str], *, input: str | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
    """``lab.host_exec`` on the bastion, with its sshd pid read fresh (other modules may
    have restarted that sshd since the session's state was loaded)."""
    fresh = lab.load_state(state.state_dir) or state
    return lab.host_exec(fresh, "bastion", argv, input=input, check=check, timeout=60)


def ruleset(state: lab.LabState) -> str:
    return on_bastion(state, "nft list ruleset").stdout


def snapshot(state: lab.LabState) -> dict[str, str]:
    """Everything NAT could touch on the bastion, checksummed: forwarding, the whole
    ruleset (counters' values dropped), iptables' view, and every file and folder under
    the directories kubebastion writes to."""
    dirs = "/etc/kubebastion /etc/sysctl.d /etc/systemd/system"
    files = on_bastion(
        state,
        f"find {dirs} \\( -type f -o -type l -o -type d \\) -printf '%p %m %l\\n' "
        f"| sort; find {dirs} -type f | sort | xargs -r sha256sum",
    ).stdout
    rules = re.sub(r"counter packets \d+ bytes \d+", "counter", ruleset(state))
    parts = {
        "ip_forward": on_bastion(state, "cat /proc/sys/net/ipv4/ip_forward").stdout,
        "ruleset": rules,
        "iptables": on_bastion(state, "iptables -S; iptables -t nat -S").stdout,
        "files": files,
    }
    return {k: hashlib.sha256(v.encode()).hexdigest() + "\n" + v for k, v in parts.items()}


def curl_sources(state: lab.LabState) -> dict[str, str]:
    """What the inet service says each node's address is ("" when unreachable)."""
    seen = {}
    for node in state.nodes:
        got = lab.http_get_from(node.namespace, INET_URL)
        seen[node.name] = got.stdout if got.returncode == 0 else ""
    return seen


def reaches_as_uplink(state: lab.LabState) -> bool:
    return all(UPLINK_ADDRESS in body for body in curl_sources(state).values())


def masquerade_count(state: lab.LabState) -> tuple[int, int]:
    table = on_bastion(state, f"nft -a list table ip {NFT_TABLE}", check=False).stdout
    return (
        len(masquerade_rules(table, PRIVATE_CIDR)),
        len(masquerade_rules(ruleset(state), PRIVATE_CIDR)),
    )


def foreign_rules_present(state: lab.LabState) -> bool:
    rules = ruleset(state)
    iptables = on_bastion(state, "iptables -t nat -S POSTROUTING").stdout
    return (
        "table ip someone_else_nat" in rules
        and f"ip saddr {FOREIGN_CIDR}" in rules
        and f"-A POSTROUTING -s {FOREIGN_CIDR} ! -o wan0 -j MASQUERADE" in iptables
    )


def inventory_copy(
    state: lab.LabState,
    tmp: Path,
    edit_hosts: dict[str, Any] | None = None,
    edit_defaults: dict[str, Any] | None = None,
) -> Path:
    """A copy of the lab inventory with edited data, and a Nornir config pointing at it."""
    tmp.mkdir(parents=True, exist_ok=True)
    hosts = yaml.safe_load((state.inventory_dir / "hosts.yaml").read_text())
    defaults = yaml.safe_load((state.inventory_dir / "defaults.yaml").read_text())
    hosts["bastion"].setdefault("data", {}).update(edit_hosts or {})
    defaults.setdefault("data", {}).update(edit_defaults or {})
    (tmp / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (tmp / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    (tmp / "groups.yaml").write_text((state.inventory_dir / "groups.yaml").read_text())
    config = yaml.safe_load(state.nornir_config.read_text())
    for key in ("host_file", "group_file", "defaults_file"):
        name = Path(config["inventory"]["options"][key]).name
        config["inventory"]["options"][key] = str(tmp / name)
    config.get("logging", {}).pop("log_file", None)
    (tmp / "nornir_config.yaml").write_text(yaml.safe_dump(config))
    return tmp / "nornir_config.yaml"


@pytest.fixture(scope="module")
def bastion(lab_env: lab.LabState) -> Iterator[lab.LabState]:
    """The lab bastion made to look like a ufw/docker host with someone else's NAT."""
    result, _ = nat(lab_env, "--remove")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not reaches_as_uplink(lab_env)  # the lab's "before": no egress
    bastion_exec(lab_env, ["nft", "-f", "-"], input=FOREIGN_NFT)
    on_bastion(lab_env, "iptables -P FORWARD DROP && iptables " + shlex.join(FOREIGN_IPTABLES))
    assert foreign_rules_present(lab_env)
    yield lab_env
    nat(lab_env, "--remove")
    on_bastion(
        lab_env,
        "iptables -P FORWARD ACCEPT; "
        f"iptables -t nat -D POSTROUTING {shlex.join(FOREIGN_IPTABLES[4:])}; "
        "nft delete table ip someone_else_nat",
        check=False,
    )
    print("\ninvoke nat timings (s): " + ", ".join(f"{k}: {v:.2f}" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def baseline(bastion: lab.LabState) -> dict[str, str]:
    return snapshot(bastion)


def test_private_cidr_without_the_nodes_is_rejected_and_nothing_changes(
    bastion: lab.LabState, baseline: dict[str, str], tmp_path: Path
) -> None:
    config = inventory_copy(bastion, tmp_path, edit_defaults={"private_cidr": "198.18.7.0/24"})
    result, _ = nat(bastion, config=config)
    assert result.returncode == 2
    assert "ip 198.18.1.10 is outside private_cidr 198.18.7.0/24" in result.stderr
    assert snapshot(bastion) == baseline


def test_unknown_uplink_is_refused_naming_it_and_nothing_changes(
    bastion: lab.LabState, baseline: dict[str, str], tmp_path: Path
) -> None:
    config = inventory_copy(bastion, tmp_path, edit_hosts={"uplink": "nosuch0"})
    result, row = nat(bastion, config=config)
    assert result.returncode == 1
    assert row["status"] == "failed"
    assert "'nosuch0'" in row["detail"] and "wan0" in row["detail"] and "priv0" in row["detail"]
    assert snapshot(bastion) == baseline


def test_dry_run_shows_the_diff_and_changes_nothing(
    bastion: lab.LabState, baseline: dict[str, str]
) -> None:
    result, row = nat(bastion, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert row["status"] == "changed"
    diff = row["detail"]
    assert "+net.ipv4.ip_forward = 1" in diff
    assert f'+\t\tip saddr {PRIVATE_CIDR} oifname "wan0" masquerade' in diff
    assert "+-A FORWARD -j KUBEBASTION-FWD" in diff
    for path in (*MANAGED_FILES, WANTS_LINK):
        assert path in diff
    human = invoke("nat", "--dry-run", "--config", str(bastion.nornir_config))
    assert "[Unit]" in human.stdout  # the diff is printed verbatim, brackets included
    assert snapshot(bastion) == baseline
    assert not reaches_as_uplink(bastion)


def test_nat_three_times_leaves_one_masquerade_and_the_reruns_change_nothing(
    bastion: lab.LabState,
) -> None:
    first, row = nat(bastion)
    assert first.returncode == 0, first.stdout + first.stderr
    assert row["status"] == "changed"
    assert row["data"]["uplink"] == "wan0" and row["data"]["forward_jump"] is True
    after_first = snapshot(bastion)
    TIMINGS["nat (1st)"] = TIMINGS.pop("nat")
    for run in ("2nd", "3rd"):
        again, row = nat(bastion)
        TIMINGS[f"nat ({run})"] = TIMINGS.pop("nat")
        assert again.returncode == 0
        assert row["status"] == "ok" and row["data"]["summary"].startswith("no change")
        human = invoke("nat", "--config", str(bastion.nornir_config))
        assert "no change" in human.stdout
    assert masquerade_count(bastion) == (1, 1)
    assert snapshot(bastion) == after_first
    assert foreign_rules_present(bastion)


def test_nodes_reach_the_internet_as_the_uplink_address(bastion: lab.LabState) -> None:
    sources = curl_sources(bastion)
    assert all(UPLINK_ADDRESS in body for body in sources.values()), sources


def test_persistence_files_are_installed(bastion: lab.LabState) -> None:
    listing = on_bastion(
        bastion, "stat -c '%n %a' " + " ".join(MANAGED_FILES) + f"; readlink {WANTS_LINK}"
    ).stdout
    assert f"{UP_SCRIPT} 755" in listing
    assert "/etc/sysctl.d/60-kubebastion-ip-forward.conf 644" in listing
    assert listing.strip().endswith(UNIT_FILE)


def test_the_forward_jump_is_what_lets_traffic_through_a_drop_policy(bastion: lab.LabState) -> None:
    on_bastion(bastion, "iptables -D FORWARD -j KUBEBASTION-FWD")
    assert not any(curl_sources(bastion).values())  # FORWARD DROP wins over our nft table
    result, row = nat(bastion)  # drift: repaired, and said so
    assert result.returncode == 0 and row["status"] == "changed"
    assert "+-A FORWARD -j KUBEBASTION-FWD" in row["detail"]
    assert reaches_as_uplink(bastion)


def test_reboot_simulation_the_unit_brings_nat_back(bastion: lab.LabState) -> None:
    before = snapshot(bastion)
    # A reboot: the kernel forgets every rule and forwarding, then at boot the firewall
    # (ufw/docker) sets FORWARD to DROP and the other owner restores its NAT rules.
    on_bastion(bastion, "nft flush ruleset && sysctl -q -w net.ipv4.ip_forward=0")
    assert not reaches_as_uplink(bastion)
    bastion_exec(bastion, ["nft", "-f", "-"], input=FOREIGN_NFT)
    on_bastion(bastion, "iptables -P FORWARD DROP && iptables " + shlex.join(FOREIGN_IPTABLES))
    unit = on_bastion(bastion, f"cat {UNIT_FILE}").stdout
    exec_start = next(
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")
    )
    on_bastion(bastion, exec_start)
    assert reaches_as_uplink(bastion)
    assert masquerade_count(bastion) == (1, 1)
    assert snapshot(bastion) == before
    result, row = nat(bastion)
    assert result.returncode == 0 and row["status"] == "ok"


def test_remove_undoes_exactly_what_nat_added(
    bastion: lab.LabState, baseline: dict[str, str]
) -> None:
    dry, row = nat(bastion, "--remove", "--dry-run")
    assert dry.returncode == 0 and row["status"] == "changed"
    assert "-net.ipv4.ip_forward = 1" in row["detail"]
    assert masquerade_count(bastion) == (1, 1)
    result, row = nat(bastion, "--remove")
    assert result.returncode == 0, result.stdout + result.stderr
    assert row["status"] == "changed"
    assert foreign_rules_present(bastion)
    assert masquerade_count(bastion) == (0, 0)
    assert snapshot(bastion) == baseline
    again, row = nat(bastion, "--remove")
    assert again.returncode == 0 and row["status"] == "ok"
    assert not reaches_as_uplink(bastion)
