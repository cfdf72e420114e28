"""`invoke nat` on a bastion without `nft` (issue 12, item 10), for real where the lab can.

The bastion's `nft` is hidden in its own mount namespace only (an empty, non-executable
file bind-mounted over /usr/sbin/nft; the machine's nft is untouched). The lab bastion
reaches no real package mirror, so what the lab shows is:

- offline (the lab as it is: deb.debian.org does not resolve there): `invoke nat` and
  `invoke nat --dry-run` stop before any change, saying the bastion is offline, which
  mirror it tried and what to do by hand;
- online as far as the decision goes (the bastion's own /etc/hosts points deb.debian.org at
  the emulated internet host, which answers on port 80): `--dry-run` shows the install of
  nftables as a planned change and changes nothing.

What the lab cannot show: a real `apt-get install` (the bastion shares this machine's
/usr and dpkg database, and the emulated internet is no Debian mirror). That command and
the decision are unit-tested in tests/unit/test_nat_packages.py; no test here runs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import lab
from kubebastion.nat.plan import MANAGED_FILES
from tests.lab.helpers import invoke

pytestmark = pytest.mark.lab

NFT = "/usr/sbin/nft"


def nat(state: lab.LabState, *args: str) -> tuple[int, dict[str, Any]]:
    result = invoke("nat", "--json", "--config", str(state.nornir_config), *args,
                    columns=False)
    rows = {r["host"]: r for r in json.loads(result.stdout)["hosts"]}
    return result.returncode, dict(rows["bastion"])


def on_bastion(state: lab.LabState, script: str, check: bool = True) -> str:
    fresh = lab.load_state(state.state_dir) or state
    return lab.host_exec(fresh, "bastion", ["sh", "-c", script], check=check).stdout


def untouched(state: lab.LabState) -> bool:
    """None of NAT's files, forwarding still off."""
    listing = on_bastion(state, "ls " + " ".join(MANAGED_FILES) + " 2>/dev/null; "
                         "cat /proc/sys/net/ipv4/ip_forward", check=False)
    return listing.strip() == "0"


@pytest.fixture(scope="module")
def without_nft(lab_env: lab.LabState) -> Iterator[lab.LabState]:
    code, row = nat(lab_env, "--remove")
    assert code == 0, row
    hidden = lab_env.bastion.host_dir / "nft-hidden"
    hidden.write_text("")
    hidden.chmod(0o644)
    on_bastion(lab_env, f"mount --bind {hidden} {NFT}")
    try:
        assert on_bastion(lab_env, "command -v nft || echo missing").strip() == "missing"
        assert untouched(lab_env)
        yield lab_env
    finally:
        on_bastion(lab_env, f"umount {NFT}", check=False)
        hidden.unlink()
    assert on_bastion(lab_env, "command -v nft").strip() == NFT


def test_offline_bastion_stops_before_any_change_naming_the_mirror(
    without_nft: lab.LabState,
) -> None:
    for args in ((), ("--dry-run",)):
        code, row = nat(without_nft, *args)
        assert code == 1 and row["status"] == "failed", row
        assert row["detail"].startswith(
            "bastion: nft is not installed on the bastion, and the bastion is offline: it "
            "cannot reach its package mirrors: deb.debian.org:80 ("), row["detail"]
        assert "`apt-get install ./nftables_*.deb`" in row["detail"]
        assert untouched(without_nft)


@pytest.fixture
def mirror_reachable(without_nft: lab.LabState) -> Iterator[lab.LabState]:
    """deb.debian.org -> the emulated internet host, in the bastion's own /etc/hosts
    (a per-host bind mount, rewritten in place)."""
    hosts = without_nft.bastion.host_dir / "hosts"
    saved = hosts.read_text()
    with hosts.open("a") as fh:
        fh.write("198.19.0.1\tdeb.debian.org\n")
    try:
        yield without_nft
    finally:
        with hosts.open("r+") as fh:
            fh.write(saved)
            fh.truncate()


def test_dry_run_shows_the_install_as_a_planned_change(mirror_reachable: lab.LabState) -> None:
    code, row = nat(mirror_reachable, "--dry-run")
    assert code == 0 and row["status"] == "changed", row
    assert row["detail"].startswith(
        "--- live: packages\n+++ wanted: packages\n@@ -0,0 +1 @@\n"
        "+nftables (from deb.debian.org:80: apt-get install nftables)\n"), row["detail"]
    assert "masquerade" in row["detail"]  # the NAT that follows is planned as well
    assert untouched(mirror_reachable)
