"""``api_port`` and ``api_address`` as kubespray variables: one source of truth.

kubebastion probes the API and writes the bastion's kubeconfig for
``api_address:api_port``, so kubespray must serve exactly that: ``api_port`` becomes
``kube_apiserver_port`` (the port every API server listens on, kubespray's default 6443),
and an ``api_address`` that is not a control plane's ``ip``/``access_ip`` (a VIP, or a
load balancer kubespray does not manage) goes into ``supplementary_addresses_in_ssl_keys``
so the API certificate is valid for it: the "Local LB + Unmanaged here LB" case of
kubespray's ``docs/operations/ha-mode.md``. A ``loadbalancer_apiserver`` the operator gives
in ``kubespray_vars`` (a load balancer kubespray wires the nodes to) must then point at
``api_address:api_port``, and a ``kube_apiserver_port`` there must equal ``api_port``;
anything else is refused before any SSH, naming the setting to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

KUBESPRAY_DEFAULT_PORT = 6443
_SANS = "supplementary_addresses_in_ssl_keys"


def api_var_problems(api_port: int, api_address: str | None,
                     kubespray_vars: Mapping[str, Any]) -> list[str]:
    """Where ``kubespray_vars`` disagrees with ``api_port``/``api_address``."""
    problems = []
    port = kubespray_vars.get("kube_apiserver_port")
    if port is not None and port != api_port:
        problems.append(f"kubespray_vars.kube_apiserver_port {port!r} disagrees with api_port "
                        f"{api_port}: set api_port only (kubebastion renders "
                        "kube_apiserver_port from it)")
    balancer = kubespray_vars.get("loadbalancer_apiserver")
    if balancer is not None:
        if not isinstance(balancer, Mapping):
            problems.append("kubespray_vars.loadbalancer_apiserver must be a mapping "
                            "{address: ..., port: ...}")
        else:
            names = {balancer.get("address"),
                     kubespray_vars.get("apiserver_loadbalancer_domain_name")} - {None}
            if api_address is None or api_address not in names:
                problems.append(
                    f"kubespray_vars.loadbalancer_apiserver ({balancer.get('address')!r}) "
                    f"is not api_address ({api_address!r}): set api_address to the load "
                    "balancer's address, which kubebastion probes and writes into the "
                    "kubeconfig")
            lb_port = balancer.get("port", api_port)
            if lb_port != api_port:
                problems.append(
                    f"kubespray_vars.loadbalancer_apiserver.port {lb_port!r} is not api_port "
                    f"{api_port}: kubebastion reaches the control planes and the load "
                    "balancer on the same port (a balancer on the control planes "
                    "themselves, which needs a port of its own, is not supported yet)")
    sans = kubespray_vars.get(_SANS)
    if sans is not None and not isinstance(sans, list):
        problems.append(f"kubespray_vars.{_SANS} must be a list (kubebastion adds "
                        "api_address to it)")
    return problems


def api_vars(api_port: int, api_address: str | None, control_plane_addresses: Sequence[str],
             kubespray_vars: Mapping[str, Any]) -> dict[str, Any]:
    """``kubespray_vars`` with ``kube_apiserver_port`` first and, when ``api_address`` is
    not already in the certificate, that address appended to the extra SANs."""
    variables: dict[str, Any] = {"kube_apiserver_port": api_port}
    variables.update((k, v) for k, v in kubespray_vars.items() if k != "kube_apiserver_port")
    balancer = kubespray_vars.get("loadbalancer_apiserver")
    covered = set(control_plane_addresses)
    if isinstance(balancer, Mapping):
        covered |= {str(balancer.get("address")),
                    str(kubespray_vars.get("apiserver_loadbalancer_domain_name"))}
    sans = list(kubespray_vars.get(_SANS) or [])
    if api_address is not None and api_address not in covered and api_address not in sans:
        variables[_SANS] = [*sans, api_address]
    return variables
