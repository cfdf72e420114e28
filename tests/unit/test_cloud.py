"""The bastion's platform from its DMI strings, and the fix each platform needs.

Captured values, not reproduced in the lab (the lab machine has no /sys/class/dmi/id).
Each case is what a real instance of that platform shows, with where it is documented:

- The kernel prints ``Hardware name: <sys_vendor> <product_name>/<board_name>, BIOS
  <bios_version> <bios_date>`` in every oops, so public bug reports carry real values:
  "Amazon EC2 t3.medium/, BIOS 1.0 10/16/2017" (Nitro), "Xen HVM domU, BIOS 4.11.amazon
  08/24/2006" (older Xen instances), "Google Google Compute Engine/Google Compute Engine,
  BIOS Google 01/01/2011", "OpenStack Foundation OpenStack Nova, BIOS 1.13.0-1ubuntu1.1
  04/01/2014".
- Nitro's chassis/BIOS vendor "Amazon EC2" and Xen's "4.11.amazon" firmware version:
  systemd's ``src/basic/virt.c`` DMI vendor table; ``hostnamectl`` on EC2 Xen prints
  "Hardware Vendor: Xen / Hardware Model: HVM domU / Firmware Version: 4.11.amazon".
- Azure: chassis asset tag 7783-7084-3265-9085-8269-3286-77 (Microsoft's "verify an Azure
  VM" docs, cloud-init ``sources/azure/identity.py`` ChassisAssetTag.AZURE_CLOUD); Hyper-V
  on premises shows the same "Microsoft Corporation" / "Virtual Machine" without it.
- OpenStack: Nova's SMBIOS product names and the public clouds' asset tags, as cloud-init's
  ``ds-identify`` matches them (dscheck_OpenStack).
"""

from __future__ import annotations

import pytest

from kubebastion.cloud import (
    AWS,
    AZURE,
    GCP,
    GENERIC,
    OPENSTACK,
    PROVIDERS,
    Provider,
    detect_provider,
    dmi_command,
    parse_dmi,
)
from kubebastion.nat.plan import parse_state, split_sections, state_command

CASES = {
    "aws-nitro": ({"sys_vendor": "Amazon EC2", "product_name": "t3.medium",
                   "bios_vendor": "Amazon EC2", "bios_version": "1.0",
                   "chassis_asset_tag": "Amazon EC2"}, AWS),
    "aws-graviton": ({"sys_vendor": "Amazon EC2", "product_name": "c6g.16xlarge",
                      "bios_vendor": "Amazon EC2", "bios_version": "1.0"}, AWS),
    "aws-xen": ({"sys_vendor": "Xen", "product_name": "HVM domU", "bios_vendor": "Xen",
                 "bios_version": "4.11.amazon", "chassis_asset_tag": ""}, AWS),
    "gcp": ({"sys_vendor": "Google", "product_name": "Google Compute Engine",
             "bios_vendor": "Google", "bios_version": "Google",
             "chassis_asset_tag": ""}, GCP),
    "azure": ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
               "bios_vendor": "Microsoft Corporation", "bios_version": "Hyper-V UEFI Release v4.1",
               "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"}, AZURE),
    "hyper-v-on-premises": ({"sys_vendor": "Microsoft Corporation",
                             "product_name": "Virtual Machine",
                             "bios_vendor": "Microsoft Corporation",
                             "chassis_asset_tag": "None"}, GENERIC),
    "openstack-nova": ({"sys_vendor": "OpenStack Foundation", "product_name": "OpenStack Nova",
                        "bios_vendor": "SeaBIOS", "bios_version": "1.13.0-1ubuntu1.1",
                        "chassis_asset_tag": ""}, OPENSTACK),
    "openstack-rdo": ({"sys_vendor": "RDO", "product_name": "OpenStack Compute",
                       "bios_vendor": "SeaBIOS"}, OPENSTACK),
    "open-telekom-cloud": ({"sys_vendor": "OpenStack Foundation",
                            "product_name": "OpenStack Nova",
                            "chassis_asset_tag": "OpenTelekomCloud"}, OPENSTACK),
    "plain-kvm": ({"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)",
                   "bios_vendor": "SeaBIOS", "chassis_asset_tag": ""}, GENERIC),
    "bare-metal": ({"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R640",
                    "bios_vendor": "Dell Inc.", "bios_version": "2.17.1",
                    "chassis_asset_tag": ""}, GENERIC),
    "no-dmi": ({}, GENERIC),  # containers, this lab, some ARM boards
}


@pytest.mark.parametrize(("dmi", "expected"), CASES.values(), ids=CASES.keys())
def test_provider_from_dmi(dmi: dict[str, str], expected: Provider) -> None:
    assert detect_provider(dmi) is expected


@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.key for p in PROVIDERS])
def test_every_cloud_names_its_forwarding_control_and_its_route(provider: Provider) -> None:
    control = {"aws": "source/destination check", "openstack": "allowed-address",
               "gcp": "canIpForward", "azure": "IP forwarding"}[provider.key]
    route = {"aws": "route table", "openstack": "host-route", "gcp": "next-hop-instance",
             "azure": "VirtualAppliance"}[provider.key]
    assert control in provider.forwarding and control.split()[0] in provider.route
    assert route in provider.route and provider.is_cloud
    assert not GENERIC.is_cloud and "default route" in GENERIC.route


def test_dmi_section_of_the_bastion_state_is_parsed() -> None:
    assert "/sys/class/dmi/id" in state_command(files=())
    captured = ("\n@@kubebastion ip_forward\n1\n@@kubebastion links\n@@kubebastion nft\n"
                "present\n@@kubebastion table\n@@kubebastion iptables\n"
                "@@kubebastion dmi\nsys_vendor=Amazon EC2\nproduct_name=m5.large\n"
                "bios_vendor=Amazon EC2\nbios_version=1.0\nchassis_asset_tag=Amazon EC2\n")
    state = parse_state(captured)
    assert state.dmi["product_name"] == "m5.large"
    assert detect_provider(state.dmi) is AWS
    assert parse_dmi(split_sections(captured)["dmi"]) == state.dmi


def test_dmi_command_prints_every_field_even_without_dmi() -> None:
    import subprocess

    out = subprocess.run(["sh", "-c", dmi_command()], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    assert set(parse_dmi(out)) == {"sys_vendor", "product_name", "bios_vendor",
                                   "bios_version", "chassis_asset_tag"}
