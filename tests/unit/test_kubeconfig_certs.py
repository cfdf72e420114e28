"""SAN checks against certificates made here, shaped like kubespray's apiserver.crt."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubebastion.errors import CertificateSANError, KubeBastionError
from kubebastion.kubeconfig.certs import (
    CertificateSANs,
    address_in_sans,
    certificate_sans,
    ensure_address_in_sans,
)

_KEY = ec.generate_private_key(ec.SECP256R1())


def make_cert(dns: list[str], ips: list[str], *, with_san: bool = True) -> bytes:
    """A self-signed PEM certificate with exactly these SANs."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if with_san:
        general_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        general_names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# What kubespray puts in apiserver.crt for one control plane (198.19.0.1 standing for the
# first service address), plus a wildcard and IPv6 names.
KUBESPRAY_DNS = [
    "k8s-m0",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "lb-apiserver.kubernetes.local",
    "localhost",
    "*.lab.example.test",
]
KUBESPRAY_IPS = ["198.19.0.1", "198.18.1.10", "127.0.0.1", "2001:0db8:0:0::10", "::1"]


@pytest.fixture(scope="module")
def sans() -> CertificateSANs:
    return certificate_sans(make_cert(KUBESPRAY_DNS, KUBESPRAY_IPS))


def test_certificate_sans_reads_both_kinds_in_order(sans: CertificateSANs) -> None:
    assert sans.dns_names == tuple(KUBESPRAY_DNS)
    assert sans.ip_addresses == ("198.19.0.1", "198.18.1.10", "127.0.0.1", "2001:db8::10", "::1")


def test_certificate_sans_uses_the_leaf_of_a_chain() -> None:
    chain = make_cert(["leaf.example.test"], []) + make_cert(["ca.example.test"], [])
    assert certificate_sans(chain).dns_names == ("leaf.example.test",)


def test_certificate_without_san_extension_has_none() -> None:
    sans = certificate_sans(make_cert([], [], with_san=False))
    assert sans == CertificateSANs()
    assert not address_in_sans("kube-apiserver", sans)  # the CN does not count (Go >= 1.15)


def test_ipv4_mapped_san_is_its_ipv4_address() -> None:
    sans = certificate_sans(make_cert([], ["::ffff:198.18.0.2"]))
    assert sans.ip_addresses == ("198.18.0.2",)
    assert address_in_sans("198.18.0.2", sans)


def test_not_a_certificate() -> None:
    with pytest.raises(CertificateSANError, match=r"apiserver\.crt on k8s-m0: not a PEM"):
        certificate_sans(b"-----BEGIN NOTHING-----\n", source="apiserver.crt on k8s-m0")


@pytest.mark.parametrize(
    "address",
    [
        "198.18.1.10",
        "127.0.0.1",
        "2001:db8::10",
        "2001:DB8:0000::10",
        "[2001:db8::10]",
        "::ffff:198.18.1.10",
        "0:0:0:0:0:0:0:1",
        "k8s-m0",
        "K8S-M0",
        "localhost.",
        "kubernetes.default.svc.cluster.local",
        "api.lab.example.test",
        "API.Lab.Example.Test",
    ],
    ids=[
        "ipv4",
        "loopback",
        "ipv6",
        "ipv6-other-spelling",
        "ipv6-bracketed",
        "ipv4-mapped",
        "ipv6-loopback-long",
        "hostname",
        "hostname-upper",
        "trailing-dot",
        "service-fqdn",
        "wildcard",
        "wildcard-upper",
    ],
)
def test_covered(address: str, sans: CertificateSANs) -> None:
    assert address_in_sans(address, sans)
    ensure_address_in_sans(address, sans, "apiserver.crt")


@pytest.mark.parametrize(
    "address",
    [
        "198.18.0.2",
        "198.18.1.1",
        "2001:db8::11",
        "k8s-m1",
        "lab.example.test",
        "a.b.lab.example.test",
        "lb-apiserver",
        "198.19.0.1.nip.io",
        "",
    ],
    ids=[
        "bastion-address",
        "neighbour-ip",
        "neighbour-ipv6",
        "other-node",
        "wildcard-parent",
        "wildcard-two-labels",
        "short-name",
        "ip-in-name",
        "empty",
    ],
)
def test_not_covered(address: str, sans: CertificateSANs) -> None:
    assert not address_in_sans(address, sans)


def test_ip_never_matches_a_dns_san() -> None:
    sans = CertificateSANs(dns_names=("198.18.0.2",), ip_addresses=())
    assert not address_in_sans("198.18.0.2", sans)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.example.test", "a.example.test", True),
        ("*.example.test", "example.test", False),
        ("*.example.test", ".example.test", False),
        ("a*.example.test", "ab.example.test", False),
        ("*.*.example.test", "a.b.example.test", False),
        ("*", "localhost", False),
        ("*.example.test.", "a.example.test", True),
    ],
    ids=["one-label", "apex", "empty-label", "partial", "double", "bare-star", "trailing-dot"],
)
def test_wildcard_rules_follow_go(pattern: str, name: str, expected: bool) -> None:
    assert address_in_sans(name, CertificateSANs(dns_names=(pattern,))) is expected


def test_error_names_address_sans_and_fix(sans: CertificateSANs) -> None:
    with pytest.raises(CertificateSANError) as caught:
        ensure_address_in_sans("198.18.0.2", sans, "apiserver.crt on k8s-m0")
    message = str(caught.value)
    assert message.startswith("198.18.0.2 is not in the subject alternative names of ")
    assert "apiserver.crt on k8s-m0" in message
    assert "DNS: k8s-m0, kubernetes, " in message
    assert "IP: 198.19.0.1, 198.18.1.10, 127.0.0.1, 2001:db8::10, ::1" in message
    assert "supplementary_addresses_in_ssl_keys in kubespray_vars" in message
    assert "rerun the kubespray step" in message
    assert isinstance(caught.value, KubeBastionError)


def test_error_when_certificate_has_no_sans() -> None:
    with pytest.raises(CertificateSANError, match=r"\(DNS: none; IP: none\)"):
        ensure_address_in_sans("198.18.0.2", CertificateSANs(), "apiserver.crt")
