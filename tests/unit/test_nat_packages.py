"""Installing nftables on a bastion without nft: package sources parsed, mirrors to probe,
the command, and the decision (install, or stop before any change) on captured inputs.

The lab cannot show a real install (its bastion shares this machine's /usr and dpkg
database, and reaches no mirror): the lab tests show the offline message and the dry-run
row; the command building and the decision are tested here.
"""

from __future__ import annotations

import subprocess

import pytest

from kubebastion.cluster import EgressTarget
from kubebastion.errors import StepError
from kubebastion.nat.packages import (
    InstallPlan,
    PackageFacts,
    facts_command,
    install_command,
    parse_facts,
    plan_install,
    probe_targets,
    source_urls,
)

# /etc/apt/sources.list.d/debian.sources of this machine's Debian 12 image (deb822).
DEBIAN_12 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
# Ubuntu 24.04 on EC2 (deb822, region mirror), with a disabled stanza.
UBUNTU_24_EC2 = """\
Types: deb
URIs: http://us-east-1.ec2.archive.ubuntu.com/ubuntu/
Suites: noble noble-updates noble-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: http://security.ubuntu.com/ubuntu/
Suites: noble-security
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb-src
Enabled: no
URIs: http://old.example.invalid/ubuntu/
Suites: noble
Components: main
"""
# Ubuntu 22.04's one-line sources.list plus a third-party repository with options.
UBUNTU_22 = """\
# See http://help.ubuntu.com/community/UpgradeNotes for how to upgrade to
deb http://archive.ubuntu.com/ubuntu/ jammy main restricted
# deb-src http://archive.ubuntu.com/ubuntu/ jammy main restricted
deb http://security.ubuntu.com/ubuntu/ jammy-security main restricted
deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] https://download.docker.com/linux/ubuntu jammy stable
"""  # noqa: E501
# Rocky Linux 9's /etc/yum.repos.d/rocky.repo (abridged: one enabled, one disabled repo).
ROCKY_9 = """\
[baseos]
name=Rocky Linux $releasever - BaseOS
mirrorlist=https://mirrors.rockylinux.org/mirrorlist?arch=$basearch&repo=BaseOS-$releasever$rltype
#baseurl=http://dl.rockylinux.org/$contentdir/$releasever/BaseOS/$basearch/os/
gpgcheck=1
enabled=1

[devel]
name=Rocky Linux $releasever - Devel WARNING! FOR BUILDROOT ONLY DO NOT LEAVE ENABLED
baseurl=http://devel.example.invalid/$releasever/devel/
enabled=0
"""
OFFLINE_LOCAL = "deb [trusted=yes] file:/opt/offline-debs ./\n"


def facts_output(sources: str, managers: str = "apt-get", os_id: str = "debian",
                 proxy: str = "") -> str:
    return (f"\n@@kubebastion managers\n{managers}\n@@kubebastion os_id\n{os_id}\n"
            f"@@kubebastion sources\n{sources}\n@@kubebastion proxy\n{proxy}\n")


@pytest.mark.parametrize(("text", "expected"), [
    (DEBIAN_12, ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security")),
    (UBUNTU_24_EC2, ("http://us-east-1.ec2.archive.ubuntu.com/ubuntu/",
                     "http://security.ubuntu.com/ubuntu/")),
    (UBUNTU_22, ("http://archive.ubuntu.com/ubuntu/", "http://security.ubuntu.com/ubuntu/",
                 "https://download.docker.com/linux/ubuntu")),
    (ROCKY_9, ("https://mirrors.rockylinux.org/mirrorlist?arch=$basearch&repo=BaseOS-"
               "$releasever$rltype",)),
    (OFFLINE_LOCAL, ("file:/opt/offline-debs",)),
    ("", ()),
], ids=["debian-12", "ubuntu-24-ec2", "ubuntu-22-one-line", "rocky-9", "local", "none"])
def test_source_urls(text: str, expected: tuple[str, ...]) -> None:
    assert source_urls(text) == expected


def test_mirrors_to_probe_are_host_and_port_once_each() -> None:
    facts = parse_facts(facts_output(DEBIAN_12 + "\n" + UBUNTU_22))
    assert probe_targets(facts) == (
        EgressTarget("deb.debian.org", 80), EgressTarget("archive.ubuntu.com", 80),
        EgressTarget("security.ubuntu.com", 80), EgressTarget("download.docker.com", 443))
    rocky = parse_facts(facts_output(ROCKY_9, managers="dnf", os_id="rocky"))
    assert (rocky.manager, probe_targets(rocky)) == (
        "dnf", (EgressTarget("mirrors.rockylinux.org", 443),))


def test_an_apt_proxy_is_what_gets_probed() -> None:
    facts = parse_facts(facts_output(
        DEBIAN_12, proxy='Acquire::http::Proxy "http://proxy.corp.example:3128";'))
    assert facts.proxy == "http://proxy.corp.example:3128"
    assert probe_targets(facts) == (EgressTarget("proxy.corp.example", 3128),)


def test_install_commands() -> None:
    apt = install_command("apt-get")
    assert apt.startswith("DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "
                          "install -y --no-install-recommends nftables || ")
    assert "apt-get -o DPkg::Lock::Timeout=300 -q update && " in apt  # fresh images: no lists
    assert install_command("dnf") == "dnf install -y nftables"
    for manager in ("apt-get", "dnf"):  # what sudo's `/bin/sh -c` will parse
        subprocess.run(["sh", "-n", "-c", install_command(manager)], check=True, timeout=10)
    with pytest.raises(ValueError, match="zypper"):
        install_command("zypper")


def test_online_bastion_plans_the_install_and_the_dry_run_shows_it() -> None:
    facts = parse_facts(facts_output(DEBIAN_12))
    reached = [(EgressTarget("deb.debian.org", 80), "")]
    plan = plan_install("bastion", facts, reached)
    assert plan == InstallPlan("nftables", "apt-get", install_command("apt-get"),
                               "deb.debian.org:80")
    assert "+nftables (from deb.debian.org:80: apt-get install nftables)" in plan.diff()


def test_a_local_package_source_needs_no_network() -> None:
    plan = plan_install("bastion", parse_facts(facts_output(OFFLINE_LOCAL)), [])
    assert plan.source == "a local package source"


def test_offline_bastion_stops_before_any_change_saying_what_to_do() -> None:
    facts = parse_facts(facts_output(DEBIAN_12))
    reached = [(EgressTarget("deb.debian.org", 80), "Temporary failure in name resolution")]
    with pytest.raises(StepError) as info:
        plan_install("bastion", facts, reached)
    message = str(info.value)
    assert message.startswith("bastion: nft is not installed on the bastion, and the bastion "
                              "is offline: it cannot reach its package mirrors: "
                              "deb.debian.org:80 (Temporary failure in name resolution).")
    assert "`apt-get install ./nftables_*.deb`" in message
    rocky = parse_facts(facts_output(ROCKY_9, managers="dnf", os_id="rocky"))
    with pytest.raises(StepError, match=r"`dnf install \./nftables-\*\.rpm`"):
        plan_install("bastion", rocky, [(EgressTarget("mirrors.rockylinux.org", 443),
                                         "timed out")])


def test_no_known_package_manager_says_so() -> None:
    facts = PackageFacts(None, "alpine", ("https://dl-cdn.alpinelinux.org/alpine/v3.20/main",),
                         None)
    with pytest.raises(StepError, match=r"no package manager kubebastion can use \(apt-get, "
                                        r"dnf; os alpine\): install nftables"):
        plan_install("bastion", facts, [])


def test_facts_command_on_this_machine() -> None:
    """Run for real here (Debian 12, like the lab bastion, which shares this /etc/apt)."""
    out = subprocess.run(["sh", "-c", facts_command()], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    facts = parse_facts(out)
    assert (facts.manager, facts.os_id) == ("apt-get", "debian")
    assert EgressTarget("deb.debian.org", 80) in probe_targets(facts)
