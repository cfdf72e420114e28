"""Does the API server's certificate cover the address we are about to write?

A kubeconfig whose ``server:`` is outside the certificate's subject alternative names
fails only later, on the operator's first kubectl call, with "x509: certificate is valid
for ..., not ...". kubespray puts the control-plane addresses and hostnames, 127.0.0.1,
localhost and ``supplementary_addresses_in_ssl_keys`` in the SANs, so a bastion-facing or
load-balancer address is often missing. We check before writing and name the variable that
fixes it.

The matching follows Go's ``crypto/x509`` (what kubectl runs): an IP address matches only IP
SANs, compared as addresses, not strings; a name matches DNS SANs case-insensitively,
ignoring one trailing dot, and ``*.example.com`` covers exactly one leftmost label.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cryptography import x509

from kubebastion.errors import CertificateSANError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class CertificateSANs:
    """A certificate's subject alternative names, in certificate order.

    IP addresses are kept in their canonical text form (``2001:db8::1``, never
    ``2001:0db8:0:0::1``), so they print the way an operator would type them.
    """

    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def describe(self) -> str:
        """``DNS: a, b; IP: c, d``: the list an error message shows."""
        dns = ", ".join(self.dns_names) or "none"
        ips = ", ".join(self.ip_addresses) or "none"
        return f"DNS: {dns}; IP: {ips}"


def certificate_sans(pem: bytes, source: str = "certificate") -> CertificateSANs:
    """The SANs of the first certificate in ``pem`` (the leaf, in a served chain).

    A certificate without a SAN extension has none: Go stopped falling back to the
    Common Name (Go 1.15), so such a certificate matches no address at all.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateSANError(f"{source}: not a PEM certificate ({exc})") from exc
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return CertificateSANs()
    names = extension.value
    ips = [
        str(_canonical_ip(value))
        for value in names.get_values_for_type(x509.IPAddress)
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)
    ]
    return CertificateSANs(
        dns_names=tuple(names.get_values_for_type(x509.DNSName)),
        ip_addresses=tuple(ips),
    )


def address_in_sans(address: str, sans: CertificateSANs) -> bool:
    """Would a TLS client connecting to ``address`` accept a certificate with ``sans``?

    ``address`` is what goes in the URL's host part: an IPv4 or IPv6 address (brackets
    allowed) or a DNS name.
    """
    host = address.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    ip = _parse_ip(host)
    if ip is not None:
        return any(_parse_ip(san) == ip for san in sans.ip_addresses)
    name = host.lower().removesuffix(".")
    return bool(name) and any(_dns_matches(pattern, name) for pattern in sans.dns_names)


def ensure_address_in_sans(address: str, sans: CertificateSANs, cert_source: str) -> None:
    """Raise, naming the fix, unless ``address`` is covered by ``sans``.

    ``cert_source`` says which certificate was checked (``apiserver.crt on k8s-m0``), so
    the operator can look at it themselves.
    """
    if address_in_sans(address, sans):
        return
    raise CertificateSANError(
        f"{address} is not in the subject alternative names of {cert_source} "
        f"({sans.describe()}), so kubectl would fail with an x509 error. "
        f"Add {address} to supplementary_addresses_in_ssl_keys in kubespray_vars "
        "(defaults.yaml, data:) and rerun the kubespray step."
    )


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return _canonical_ip(ipaddress.ip_address(text))
    except ValueError:
        return None


def _canonical_ip(ip: IPAddress) -> IPAddress:
    """``::ffff:198.18.0.1`` is 198.18.0.1, as Go's ``net.IP.Equal`` treats them."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _dns_matches(pattern: str, name: str) -> bool:
    """Go's ``matchHostnames``: exact, or a ``*`` that stands for the whole first label."""
    pattern = pattern.lower().removesuffix(".")
    if not pattern:
        return False
    if pattern == name:
        return True
    pattern_labels = pattern.split(".")
    name_labels = name.split(".")
    if pattern_labels[0] != "*" or len(pattern_labels) != len(name_labels):
        return False
    if len(pattern_labels) < 2 or not name_labels[0]:
        return False
    return pattern_labels[1:] == name_labels[1:] and "*" not in ".".join(pattern_labels[1:])
