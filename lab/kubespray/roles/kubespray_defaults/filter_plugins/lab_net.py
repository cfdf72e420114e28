"""Jinja filters the stand-in uses instead of the ansible.utils collection (and netaddr)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any


def is_network(value: Any) -> bool:
    """True for a network range such as 10.233.0.0/18 (host bits zero)."""
    try:
        return "/" in str(value) and bool(ipaddress.ip_network(str(value)))
    except ValueError:
        return False


def networks_overlap(a: str, b: str) -> bool:
    return ipaddress.ip_network(a, strict=False).overlaps(ipaddress.ip_network(b, strict=False))


def nth_address(cidr: str, n: int) -> str:
    return str(ipaddress.ip_network(cidr, strict=False)[int(n)])


def url_host(address: str) -> str:
    """Wrap an IPv6 address in brackets for a URL."""
    return f"[{address}]" if ":" in address else address


def node_addresses(names: list[str], hostvars: Mapping[str, Any]) -> list[dict[str, str]]:
    """name, ip (bind address) and access_ip of hosts, with kubespray's fallbacks."""
    result = []
    for name in names:
        hv = hostvars[name]
        ip = str(hv.get("ip") or hv.get("ansible_host") or name)
        result.append({"name": name, "ip": ip, "access_ip": str(hv.get("access_ip") or ip)})
    return result


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "lab_is_network": is_network,
            "lab_networks_overlap": networks_overlap,
            "lab_nth_address": nth_address,
            "lab_url_host": url_host,
            "lab_node_addresses": node_addresses,
        }
