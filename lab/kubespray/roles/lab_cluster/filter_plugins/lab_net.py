"""Jinja filters of the stand-in's install phase (the inventory checks are real kubespray's,
with ansible.utils and netaddr from the real requirements)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


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
            "lab_url_host": url_host,
            "lab_node_addresses": node_addresses,
        }
