#!/usr/bin/python3
"""Host-side helper of the lab kubespray stand-in (the part kubeadm plays in kubespray).

Runs on the lab hosts with the system python3 and its python3-cryptography (>= 38).
Every sub-command is idempotent and prints one JSON object with a "changed" key.

  ca            create the cluster CA once (ca.crt, ca.key)
  issue         issue or keep a certificate signed by the CA (server/client usage, SANs)
  csr           keep a valid node certificate, or print a CSR for a new one
  sign          sign a CSR read from stdin (subject taken from the options, not the CSR)
  kubeconfig    write a kubeconfig (admin.conf) with embedded credentials, mode 0600
  daemon        start a detached background process once (pid file + fingerprint)
  stop          stop a process started by `daemon`
  upgrade-policy  kubeadm upgrade apply's version checks (one minor version at a time)
  record        append a JSON object read from stdin, with the time, as one line to a file
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.UTC
VALIDITY = dt.timedelta(days=365)
#: How long ``daemon --wait-port`` waits for the port: the API server's start (python,
#: cryptography, TLS) took over 10 s on the shared 2-core test machine under load.
START_TIMEOUT = 30
CA_VALIDITY = dt.timedelta(days=3650)
RENEW_BEFORE = dt.timedelta(days=30)
Key = rsa.RSAPrivateKey


def out(**data: Any) -> None:
    print(json.dumps(data))


def write(path: Path, data: bytes, mode: int) -> bool:
    """Write atomically (root-owned when run as root); True when content or mode changed."""
    if path.exists() and path.read_bytes() == data:
        st = path.stat()
        if st.st_mode & 0o777 == mode and (os.getuid() != 0 or st.st_uid == st.st_gid == 0):
            return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    if os.getuid() == 0:
        os.chown(tmp, 0, 0)
    os.replace(tmp, path)
    return True


def new_key() -> Key:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def load_key(path: Path) -> Key | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, rsa.RSAPrivateKey) else None


def load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def not_after(cert: x509.Certificate) -> dt.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=UTC)


def subject(cn: str, orgs: list[str]) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def parse_sans(values: list[str]) -> set[x509.GeneralName]:
    names: set[x509.GeneralName] = set()
    for value in values:
        try:
            names.add(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            names.add(x509.DNSName(value.lower()))
    return names


def cert_sans(cert: x509.Certificate) -> set[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(ext.value)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    pub = ca.public_key()
    if not isinstance(pub, rsa.RSAPublicKey) or cert.signature_hash_algorithm is None:
        return False
    try:
        pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   cert.signature_hash_algorithm)
    except Exception:
        return False
    return True


def cert_ok(cert: x509.Certificate | None, ca: x509.Certificate, name: x509.Name,
            sans: set[x509.GeneralName], key: Key | None) -> bool:
    """True when cert is what we would issue now: same CA, subject, SANs, key; not expiring."""
    if cert is None or key is None or not signed_by(cert, ca) or cert.subject != name:
        return False
    if cert_sans(cert) != sans or not_after(cert) - dt.datetime.now(UTC) < RENEW_BEFORE:
        return False
    return cert.public_key().public_numbers() == key.public_key().public_numbers()


def build(name: x509.Name, pub: rsa.RSAPublicKey, issuer: x509.Name, signer: Key,
          sans: set[x509.GeneralName], server: bool, is_ca: bool = False) -> x509.Certificate:
    now = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(pub)
         .serial_number(x509.random_serial_number()).not_valid_before(now)
         .not_valid_after(now + (CA_VALIDITY if is_ca else VALIDITY))
         .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(
             digital_signature=True, key_encipherment=not is_ca, content_commitment=False,
             data_encipherment=False, key_agreement=False, key_cert_sign=is_ca,
             crl_sign=is_ca, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))
    if not is_ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        ordered = sorted(sans, key=lambda n: (type(n).__name__, str(n.value)))
        b = b.add_extension(x509.SubjectAlternativeName(ordered), critical=False)
    return b.sign(signer, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_ca(pki: Path, need_key: bool = True) -> tuple[x509.Certificate, Key | None]:
    ca = load_cert(pki / "ca.crt")
    key = load_key(pki / "ca.key") if need_key else None
    if ca is None or (need_key and key is None):
        sys.exit(f"labctl: no usable cluster CA in {pki}")
    return ca, key


def cmd_ca(a: argparse.Namespace) -> None:
    pki = Path(a.dir)
    ca, key = load_cert(pki / "ca.crt"), load_key(pki / "ca.key")
    if ca is not None and key is not None and \
            ca.public_key().public_numbers() == key.public_key().public_numbers():
        return out(changed=False)
    key = new_key()
    name = subject(a.cn, [])
    ca = build(name, key.public_key(), name, key, set(), server=False, is_ca=True)
    write(pki / "ca.key", key_pem(key), 0o600)
    write(pki / "ca.crt", pem(ca), 0o644)
    out(changed=True)


def cmd_issue(a: argparse.Namespace) -> None:
    pki = Path(a.dir)
    ca, ca_key = load_ca(pki)
    assert ca_key is not None
    crt, keyfile = pki / f"{a.name}.crt", pki / f"{a.name}.key"
    name, sans = subject(a.cn, a.org), parse_sans(a.san)
    key = load_key(keyfile)
    if cert_ok(load_cert(crt), ca, name, sans, key):
        return out(changed=False)
    key = key or new_key()
    cert = build(name, key.public_key(), ca.subject, ca_key, sans, server=a.server)
    write(keyfile, key_pem(key), 0o600)
    write(crt, pem(cert), 0o644)
    out(changed=True)


def cmd_csr(a: argparse.Namespace) -> None:
    pki = Path(a.dir)
    ca, _ = load_ca(pki, need_key=False)
    crt, keyfile = pki / f"{a.name}.crt", pki / f"{a.name}.key"
    name = subject(a.cn, a.org)
    key = load_key(keyfile)
    if cert_ok(load_cert(crt), ca, name, set(), key):
        return out(changed=False, csr=None)
    if key is None:
        key = new_key()
        write(keyfile, key_pem(key), 0o600)
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    out(changed=True, csr=csr.public_bytes(serialization.Encoding.PEM).decode())


def cmd_sign(a: argparse.Namespace) -> None:
    ca, ca_key = load_ca(Path(a.dir))
    assert ca_key is not None
    csr = x509.load_pem_x509_csr(sys.stdin.buffer.read())
    pub = csr.public_key()
    if not csr.is_signature_valid or not isinstance(pub, rsa.RSAPublicKey):
        sys.exit("labctl: invalid CSR")
    cert = build(subject(a.cn, a.org), pub, ca.subject, ca_key, set(), server=False)
    out(changed=True, cert=pem(cert).decode())


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def yaml_str(value: str) -> str:
    """A plain YAML scalar when that reads back as the same string, else a quoted one."""
    plain = re.fullmatch(r"[A-Za-z][A-Za-z0-9@._:/\[\]-]*", value) and ": " not in value
    special = value.lower() in {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}
    return value if plain and not special else json.dumps(value)


def cmd_kubeconfig(a: argparse.Namespace) -> None:
    pki, q = Path(a.dir), yaml_str
    ctx = f"{a.user}@{a.cluster}"
    text = f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {b64(pki / "ca.crt")}
    server: {q(a.server)}
  name: {q(a.cluster)}
contexts:
- context:
    cluster: {q(a.cluster)}
    user: {q(a.user)}
  name: {q(ctx)}
current-context: {q(ctx)}
kind: Config
preferences: {{}}
users:
- name: {q(a.user)}
  user:
    client-certificate-data: {b64(pki / f"{a.cert}.crt")}
    client-key-data: {b64(pki / f"{a.cert}.key")}
"""
    changed = False
    for dest in [a.out, *a.copy_to]:
        changed |= write(Path(dest), text.encode(), 0o600)
    out(changed=changed)


def running(pidfile: Path) -> dict[str, Any] | None:
    """The pid file's record when its process is alive and still runs the recorded argv."""
    try:
        rec: dict[str, Any] = json.loads(pidfile.read_text())
        cmdline = Path(f"/proc/{rec['pid']}/cmdline").read_bytes().split(b"\0")[:-1]
    except (OSError, ValueError, KeyError):
        return None
    return rec if [c.decode() for c in cmdline] == rec.get("argv") else None


def gone(pid: int) -> bool:
    """True once pid has exited: no /proc entry, or a zombie (whose files are closed)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def stop(pidfile: Path) -> bool:
    rec = running(pidfile)
    if rec is not None:
        pid = int(rec["pid"])
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if running(pidfile) is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        # An exiting process's /proc cmdline empties before its files (a listening socket)
        # close: a restart at once found "port 6443 is already taken" (an upgrade's API
        # server restart, under load). Wait until it has exited; kill nothing more here,
        # since the pid may have been reused by then.
        deadline = time.monotonic() + 10
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return rec is not None


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def port_holders(port: int) -> str:
    """Which processes listen on a TCP port (pid and command line), from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{f[9]}]")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                found.append(f"pid {proc.name} ({cmd or 'exiting'})")
        except OSError:
            continue
    return ", ".join(found)


def cmd_daemon(a: argparse.Namespace) -> None:
    pidfile, argv = Path(a.pidfile), list(a.argv[1:] if a.argv[:1] == ["--"] else a.argv)
    digest = hashlib.sha256(json.dumps(argv).encode())
    for f in a.watch:
        digest.update(Path(f).read_bytes())
    rec = running(pidfile)
    if rec is not None and rec.get("fingerprint") == digest.hexdigest():
        return out(changed=False, pid=rec["pid"])
    stop(pidfile)
    # An old server that is still exiting (slow under load) lets go of the port soon: wait
    # for that, then name whoever still holds it.
    free_by = time.monotonic() + a.port_free_wait
    while a.wait_port and port_open(a.wait_port) and time.monotonic() < free_by:
        time.sleep(0.2)
    if a.wait_port and port_open(a.wait_port):
        sys.exit(f"labctl: port {a.wait_port} is already taken by another process: "
                 f"{port_holders(a.wait_port) or 'not found in /proc'}")
    with open(a.log, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                cwd="/", close_fds=True, start_new_session=True)
    pidfile.write_text(json.dumps({"pid": proc.pid, "argv": argv,
                                   "fingerprint": digest.hexdigest()}))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(a.log).read_text(errors="replace")[-2000:]
            sys.exit(f"labctl: {argv[1] if len(argv) > 1 else argv[0]} exited:\n{tail}")
        if not a.wait_port or port_open(a.wait_port):
            return out(changed=True, pid=proc.pid)
        time.sleep(0.1)
    sys.exit(f"labctl: port {a.wait_port} did not open within {START_TIMEOUT} s")


def cmd_stop(a: argparse.Namespace) -> None:
    out(changed=stop(Path(a.pidfile)))


def semver(version: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version.strip())
    if m is None:
        sys.exit(f"labctl: not a Kubernetes version: {version!r}")
    major, minor, patch = (int(g) for g in m.groups())
    return major, minor, patch


#: kubeadm's MaximumAllowedMinorVersionUpgradeSkew and ...DowngradeSkew
#: (cmd/kubeadm/app/phases/upgrade/policy.go).
MAX_MINOR_SKEW = 1


def upgrade_policy_errors(cluster: str, new: str) -> list[str]:
    """The mandatory errors of kubeadm's EnforceVersionPolicies for a released version,
    in its words: `kubeadm upgrade apply` refuses them (kubespray's "Kubeadm | Upgrade first
    control plane node" task fails with this output)."""
    (cmaj, cmin, _), (nmaj, nmin, _) = semver(cluster), semver(new)
    errors = []
    if nmaj != cmaj or nmin > cmin + MAX_MINOR_SKEW:
        errors.append(f'Specified version to upgrade to "{new}" is too high; kubeadm can '
                      f"upgrade only {MAX_MINOR_SKEW} minor version at a time")
    elif nmin < cmin - MAX_MINOR_SKEW:
        errors.append(f'Specified version to downgrade to "{new}" is too low; kubeadm can '
                      f"downgrade only {MAX_MINOR_SKEW} minor version at a time")
    return errors


def cmd_upgrade_policy(a: argparse.Namespace) -> None:
    errors = upgrade_policy_errors(a.cluster_version, a.version)
    if errors:
        listed = "".join(f"\t- {e}\n" for e in errors)
        sys.exit("[upgrade/version] FATAL: the --version argument is invalid due to these "
                 f"fatal errors:\n\n{listed}\nPlease fix the misalignments highlighted above "
                 "and try upgrading again")
    out(changed=semver(a.cluster_version) != semver(a.version),
        cluster_version=a.cluster_version, version=a.version)


def cmd_record(a: argparse.Namespace) -> None:
    """One line per call, written with one write() on an O_APPEND descriptor, so lines of
    nodes recorded at the same time (one upgrade batch) never interleave."""
    data = json.loads(sys.stdin.read())
    if not isinstance(data, dict):
        sys.exit("labctl: record wants a JSON object on stdin")
    line = json.dumps({"time": time.time(), **data}, sort_keys=True) + "\n"
    fd = os.open(a.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    out(changed=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("ca")
    c.add_argument("--dir", required=True)
    c.add_argument("--cn", default="kubernetes")
    for n in ("issue", "csr", "sign"):
        c = sub.add_parser(n)
        c.add_argument("--dir", required=True)
        c.add_argument("--cn", required=True)
        c.add_argument("--org", action="append", default=[])
        if n != "sign":
            c.add_argument("--name", required=True, help="file stem: NAME.crt, NAME.key")
        if n == "issue":
            c.add_argument("--san", action="append", default=[])
            c.add_argument("--server", action="store_true", help="serverAuth (else clientAuth)")
    c = sub.add_parser("kubeconfig")
    c.add_argument("--dir", required=True)
    c.add_argument("--cert", default="admin", help="file stem of the client certificate")
    c.add_argument("--server", required=True)
    c.add_argument("--cluster", default="cluster.local")
    c.add_argument("--user", default="kubernetes-admin")
    c.add_argument("--out", required=True)
    c.add_argument("--copy-to", action="append", default=[])
    c = sub.add_parser("daemon")
    c.add_argument("--pidfile", required=True)
    c.add_argument("--log", required=True)
    c.add_argument("--watch", action="append", default=[], help="restart when this changes")
    c.add_argument("--wait-port", type=int, default=0)
    c.add_argument("--port-free-wait", type=float, default=START_TIMEOUT,
                   help="seconds to wait for an old holder of --wait-port to let go")
    c.add_argument("argv", nargs=argparse.REMAINDER)
    c = sub.add_parser("stop")
    c.add_argument("--pidfile", required=True)
    c = sub.add_parser("upgrade-policy")
    c.add_argument("--cluster-version", required=True, help="what the API server reports")
    c.add_argument("--version", required=True, help="the version to upgrade to")
    c = sub.add_parser("record")
    c.add_argument("--file", required=True)
    a = p.parse_args()
    globals()[f"cmd_{a.cmd.replace('-', '_')}"](a)


if __name__ == "__main__":
    main()
