"""Which platform the bastion runs on, and what that platform needs before a VM may route
other machines' traffic.

A Linux bastion with forwarding and masquerade is not enough on a cloud: the cloud's
virtual network drops packets a VM sends or receives for addresses that are not its own
(AWS source/destination check, OpenStack port security, GCP ``canIpForward``, Azure NIC IP
forwarding) and routes the subnet by its own route table, not by the nodes' routes. None
of that is visible from inside the VM, so the egress diagnosis names the control of the
platform the bastion is on.

The platform is read from the DMI strings the firmware hands the kernel
(``/sys/class/dmi/id``): no metadata-service call, nothing that could hang or need a
network. The values matched are the ones each provider documents and that cloud-init's
``ds-identify`` matches (quoted in ``tests/unit/test_cloud.py`` with their sources).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kubebastion.ssh.remote import parse_key_values

DMI_DIR = "/sys/class/dmi/id"
#: World-readable files only: product_uuid and the serials need root and add nothing here.
DMI_FIELDS = ("sys_vendor", "product_name", "bios_vendor", "bios_version",
              "chassis_asset_tag")
#: Azure's chassis asset tag (Hyper-V on premises shows the same vendor and product name,
#: "Microsoft Corporation" / "Virtual Machine"; only this tag says Azure).
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
#: Nova's SMBIOS product names and the asset tags public OpenStack clouds set.
OPENSTACK_NAMES = ("OpenStack Nova", "OpenStack Compute")
OPENSTACK_ASSET_TAGS = (*OPENSTACK_NAMES, "OpenTelekomCloud", "SAP CCloud VM", "HUAWEICLOUD")


@dataclass(frozen=True)
class Provider:
    """A platform and its fixes: ``route`` when the nodes' traffic does not go to the
    bastion, ``forwarding`` when it does and still gets nowhere, ``dns`` when names do
    not resolve on a node."""

    key: str
    name: str
    route: str
    forwarding: str
    dns: str

    @property
    def is_cloud(self) -> bool:
        return self.key != GENERIC.key


GENERIC = Provider(
    key="generic",
    name="bare metal or unknown platform",
    route="point the node's default route at the bastion's private address (netplan "
          "`routes: [{to: default, via: ADDRESS}]`, or your DHCP server's router option)",
    forwarding="check the bastion's uplink and any firewall upstream of it (on a "
               "hypervisor, also its anti-spoofing for the bastion's port)",
    dns="give the node a resolver it can reach (netplan `nameservers:`, or "
        "/etc/systemd/resolved.conf DNS= when it uses systemd-resolved's 127.0.0.53)",
)

AWS = Provider(
    key="aws",
    name="AWS",
    route="on AWS the subnet's route table decides, not the node: route 0.0.0.0/0 of the "
          "nodes' subnet to the bastion's network interface (aws ec2 create-route "
          "--route-table-id RTB --destination-cidr-block 0.0.0.0/0 --network-interface-id "
          "ENI), and turn the bastion's source/destination check off",
    forwarding="on AWS turn the bastion's source/destination check off (aws ec2 "
               "modify-instance-attribute --instance-id ID --no-source-dest-check), route "
               "the nodes' subnet's 0.0.0.0/0 to the bastion's network interface, and let "
               "the bastion's security group accept the nodes' traffic",
    dns="on AWS the VPC resolver is the VPC network's base address + 2 (or 169.254.169.253); "
        "it needs enableDnsSupport on the VPC",
)

OPENSTACK = Provider(
    key="openstack",
    name="OpenStack",
    route="on OpenStack give the nodes' subnet a default route via the bastion "
          "(openstack subnet set --host-route destination=0.0.0.0/0,gateway=BASTION_IP, or "
          "the node's own route), and allowed-address pairs 0.0.0.0/0 on the bastion's port",
    forwarding="on OpenStack port security drops packets whose addresses are not the "
               "port's own: add the allowed-address pair 0.0.0.0/0 to the bastion's port "
               "(openstack port set --allowed-address ip-address=0.0.0.0/0 PORT) or turn "
               "port security off on it, and let its security group accept the nodes' "
               "traffic",
    dns="on OpenStack the subnet's dns_nameservers (openstack subnet set "
        "--dns-nameserver) reach the nodes by DHCP",
)

GCP = Provider(
    key="gcp",
    name="GCP",
    route="on GCP the VPC's routes decide: add a route 0.0.0.0/0 with the bastion as next "
          "hop for the nodes (gcloud compute routes create ... --next-hop-instance BASTION "
          "--tags NODE_TAG), and the bastion needs canIpForward",
    forwarding="on GCP the bastion needs canIpForward (set when the instance is created: "
               "gcloud compute instances create --can-ip-forward), a route 0.0.0.0/0 with "
               "the bastion as next hop for the nodes' network tag, and a firewall rule "
               "that lets the nodes' traffic in",
    dns="on GCP the metadata server 169.254.169.254 is the VPC resolver",
)

AZURE = Provider(
    key="azure",
    name="Azure",
    route="on Azure the subnet's route table decides: a user-defined route 0.0.0.0/0 with "
          "next hop type VirtualAppliance at the bastion's private address, attached to "
          "the nodes' subnet, and IP forwarding on the bastion's NIC",
    forwarding="on Azure turn IP forwarding on for the bastion's NIC (az network nic update "
               "--ip-forwarding true), attach a route table with 0.0.0.0/0 -> "
               "VirtualAppliance at the bastion to the nodes' subnet, and let its network "
               "security group accept the nodes' traffic",
    dns="on Azure the platform resolver is 168.63.129.16",
)

PROVIDERS = (AWS, OPENSTACK, GCP, AZURE)


def dmi_command() -> str:
    """Print ``field=value`` for each DMI field (empty when the file is absent: containers,
    some ARM boards)."""
    fields = " ".join(DMI_FIELDS)
    return (f"for f in {fields}; do printf '%s=%s\\n' \"$f\" "
            f"\"$(head -n1 {DMI_DIR}/\"$f\" 2>/dev/null)\"; done")


def parse_dmi(text: str) -> dict[str, str]:
    return {key: value for key, value in parse_key_values(text).items() if key in DMI_FIELDS}


def detect_provider(dmi: Mapping[str, str]) -> Provider:
    """The provider the DMI strings name; GENERIC when none does (bare metal, a private
    hypervisor, or DMI unreadable)."""
    vendor = dmi.get("sys_vendor", "")
    product = dmi.get("product_name", "")
    bios_vendor = dmi.get("bios_vendor", "")
    asset = dmi.get("chassis_asset_tag", "")
    if "Amazon EC2" in (vendor, bios_vendor, asset) or (
            vendor == "Xen" and "amazon" in dmi.get("bios_version", "").lower()):
        return AWS
    if product == "Google Compute Engine" or vendor == "Google":
        return GCP
    if asset == AZURE_ASSET_TAG:
        return AZURE
    if product in OPENSTACK_NAMES or asset in OPENSTACK_ASSET_TAGS or (
            vendor == "OpenStack Foundation"):
        return OPENSTACK
    return GENERIC
