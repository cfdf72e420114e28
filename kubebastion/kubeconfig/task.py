"""Step 4: the admin kubeconfig on the bastion, pointed at an address it can reach.

By hand operators copy admin.conf to the bastion, get "connection refused" at
127.0.0.1:6443, ``sed`` the address and ``nc -zv master 6443``. Done right: the
``server:`` is rewritten through the YAML whatever it holds, the address is checked
against the API certificate's SANs before anything is written, the entries are merged
under a named context (stale same-named entries replaced, others kept), and the file is
committed atomically with a backup.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from nornir.core import Nornir
from nornir.core.exceptions import NornirSubTaskError
from nornir.core.task import Result, Task

from kubebastion.api import ApiCredentials, ClusterHealth, Opener, bastion_opener
from kubebastion.atomic_file import locked, prune_backups, write_atomic
from kubebastion.cluster import Cluster
from kubebastion.errors import KubeBastionError, StepError
from kubebastion.kubeconfig.admin import ADMIN_CONF, first_answering
from kubebastion.kubeconfig.certs import CertificateSANs, certificate_sans, ensure_address_in_sans
from kubebastion.kubeconfig.merge import (
    Kubeconfig,
    dump_kubeconfig,
    format_server_url,
    merge_kubeconfig,
    parse_kubeconfig,
    rename_entries,
    rewrite_server,
)
from kubebastion.kubeconfig.remote import (
    DEFAULT_KEEP_BACKUPS,
    MergeFunction,
    kubeconfig_path,
    write_merged,
)
from kubebastion.kubeconfig.verify import (
    DEFAULT_READY_TIMEOUT,
    NodeRow,
    ReadyReport,
    verify_ready,
)
from kubebastion.node_ips import resolve_node_ips
from kubebastion.report import FAILED, HostOutcome, outcomes
from kubebastion.runtime import Run, full_inventory
from kubebastion.ssh.remote import read_file
from kubebastion.ssh.shell import shell_for, shell_for_host

DEFAULT_TUNNEL_PORT = 16443
APISERVER_CRT = "/etc/kubernetes/pki/apiserver.crt"
_SECRET_FIELD = re.compile(r"-data$")
#: The parts of ``fetch_kubeconfig`` (its sub-tasks' names).
KUBECONFIG, READY = "kubeconfig", "ready"


@dataclass(frozen=True)
class FetchOutcome:
    """Where the context was written (``write_kubeconfig``), then what the Ready
    verification saw (``ready``; None in a dry run or before it ran)."""

    context: str
    path: str
    server: str
    source: str
    backup: str
    local_path: str = ""
    local_server: str = ""
    local_backup: str = ""
    credentials: ApiCredentials | None = field(default=None, repr=False, compare=False)
    #: What the API said when admin.conf was read (saves a second look when all is Ready).
    health: ClusterHealth | None = field(default=None, repr=False, compare=False)
    ready: ReadyReport | None = field(default=None, compare=False)

    @property
    def summary(self) -> str:
        if self.ready is not None and not self.ready.health.healthy:
            return self.ready.summary
        written = f"context {self.context} in {self.path} -> {self.server}"
        return written if self.ready is None else f"{written}; {self.ready.summary}"

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in (
            "context", "path", "server", "source", "backup", "local_path", "local_server",
            "local_backup")}
        if self.ready is not None:
            data["ready"] = self.ready.as_dict()
        return data


def default_context(cluster: Cluster) -> str:
    return cluster.name


def served_certificate_sans(opener: Opener, address: str, port: int) -> CertificateSANs:
    """The SANs of the certificate the API serves at ``address`` (seen from the bastion)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only reading the certificate, nothing is sent
    sock = opener(address, port)
    with context.wrap_socket(sock, server_hostname=address) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise StepError(f"{address}:{port} presented no certificate")
    pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    return certificate_sans(pem, f"certificate served at {address}:{port}")


def api_sans(nornir: Nornir, cluster: Cluster, opener: Opener, source: str
             ) -> tuple[CertificateSANs, str]:
    """SANs from the served certificate, else from apiserver.crt on the control plane."""
    address = cluster.api_server_address
    try:
        where = f"the certificate served at {address}:{cluster.api_port}"
        return served_certificate_sans(opener, address, cluster.api_port), where
    except (OSError, ssl.SSLError, KubeBastionError):
        pass
    host = full_inventory(nornir).hosts[source]
    pem = read_file(shell_for_host(host, nornir.config), APISERVER_CRT, sudo=True)
    if pem is None:
        raise StepError(f"cannot read the API certificate: {address}:{cluster.api_port} "
                        f"did not answer and {source} has no {APISERVER_CRT}")
    return certificate_sans(pem, f"{source}:{APISERVER_CRT}"), f"{source}:{APISERVER_CRT}"


def bastion_entry(admin_conf: str, context: str, server: str,
                  tls_server_name: str | None = None) -> Kubeconfig:
    """admin.conf renamed to ``context`` and pointed at ``server``."""
    parsed = parse_kubeconfig(admin_conf, ADMIN_CONF)
    return rewrite_server(rename_entries(parsed, context), server, tls_server_name)


def merged_text(incoming: Kubeconfig, switch: bool) -> MergeFunction:
    def merge(current: str, source: str) -> str:
        existing = parse_kubeconfig(current, source)
        merged = dump_kubeconfig(merge_kubeconfig(existing, incoming, switch))
        return current if _same_document(current, merged, source) else merged
    return merge


def _same_document(current: str, merged: str, source: str) -> bool:
    if not current:
        return False
    return bool(parse_kubeconfig(current, source) == parse_kubeconfig(merged, source))


def redacted_diff(old: str, new: str, path: str) -> str:
    """A unified diff with credential fields shown as checksums, safe to print."""
    def scrub(text: str) -> list[str]:
        lines = []
        for line in text.splitlines(keepends=True):
            key, sep, value = line.partition(":")
            if sep and _SECRET_FIELD.search(key.strip()) and value.strip():
                digest = hashlib.sha256(value.strip().encode()).hexdigest()[:12]
                line = f"{key}: <redacted sha256:{digest}>\n"
            lines.append(line)
        return lines
    return "".join(difflib.unified_diff(scrub(old), scrub(new), f"{path} (before)",
                                        f"{path} (after)"))


def tls_name_for_tunnel(sans: CertificateSANs, preferred: str) -> str:
    """A SAN name for a ``127.0.0.1`` tunnel endpoint, so TLS verification stays on."""
    names = [n for n in sans.dns_names if not n.startswith("*")]
    if preferred in names:
        return preferred
    if names:
        return names[0]
    raise StepError(f"the API certificate has no DNS name ({sans.describe()}): a tunnel "
                    "context cannot verify it; add a name to supplementary_addresses_in_ssl_keys")


def merge_local(path: Path, incoming: Kubeconfig, switch: bool, dry_run: bool,
                keep_backups: int = DEFAULT_KEEP_BACKUPS) -> tuple[bool, str]:
    """Merge into the operator's own kubeconfig: locked, atomic, backed up (the newest
    ``keep_backups`` of our backups kept)."""
    with locked(path):
        current = path.read_text() if path.exists() else ""
        new = merged_text(incoming, switch)(current, str(path))
        if new == current:
            return False, ""
        if dry_run:
            return True, ""
        backup = write_atomic(path, new.encode(), 0o600, backup=True)
        prune_backups(path, keep_backups)
        return True, str(backup or "")


def write_kubeconfig(task: Task, cluster: Cluster, context: str | None = None,
                     switch: bool = True, local_path: str | None = None,
                     tunnel_port: int = DEFAULT_TUNNEL_PORT) -> Result:
    """Run on the bastion: merge the cluster's admin credentials into its kubeconfig
    (and, with ``local_path``, into the operator's own, through ``invoke tunnel``)."""
    nornir = task.nornir
    opener = bastion_opener(nornir, cluster)
    admin = first_answering(nornir, cluster, opener)
    address = cluster.api_server_address
    sans, where = api_sans(nornir, cluster, opener, admin.control_plane)
    ensure_address_in_sans(address, sans, where)
    name = context or default_context(cluster)
    server = format_server_url(address, cluster.api_port)
    incoming = bastion_entry(admin.text, name, server)
    shell = shell_for(task)
    path = kubeconfig_path(shell)
    changed, old, new, backup = write_merged(shell, path, merged_text(incoming, switch),
                                             dry_run=task.is_dry_run(),
                                             keep_backups=cluster.kubeconfig_backups)
    diff = redacted_diff(old, new, path) if changed else ""
    local_server = local_backup = ""
    if local_path:
        local_server = format_server_url("127.0.0.1", tunnel_port)
        tls_name = tls_name_for_tunnel(sans, cluster.control_planes[0].name)
        local_entry = bastion_entry(admin.text, name, local_server, tls_name)
        local_changed, local_backup = merge_local(Path(local_path).expanduser(), local_entry,
                                                  switch, task.is_dry_run(),
                                                  cluster.kubeconfig_backups)
        if local_changed:
            changed = True
            diff += f"\n{local_path}: context {name} -> {local_server} (tls-server-name "\
                    f"{tls_name})\n"
    outcome = FetchOutcome(name, path, server, admin.control_plane, backup or "",
                           local_path or "", local_server, local_backup, admin.credentials,
                           admin.health)
    return Result(host=task.host, result=outcome, changed=changed, diff=diff)


def fetch_kubeconfig(task: Task, cluster: Cluster, context: str | None = None,
                     switch: bool = True, local_path: str | None = None,
                     tunnel_port: int = DEFAULT_TUNNEL_PORT,
                     ready_timeout: float = DEFAULT_READY_TIMEOUT) -> Result:
    """Run on the bastion: step 4 whole, as ``invoke deploy`` runs it: the kubeconfig
    written (``write_kubeconfig``), then every node Ready within ``ready_timeout``
    (``verify_ready``; not in a dry run). Nodes not Ready: a failed result saying which."""
    written = run_part(task, write_kubeconfig, KUBECONFIG, cluster=cluster, context=context,
                       switch=switch, local_path=local_path, tunnel_port=tunnel_port)
    outcome = written.result
    assert isinstance(outcome, FetchOutcome)
    if task.is_dry_run():
        return Result(host=task.host, result=outcome, changed=written.changed,
                      diff=written.diff)
    checked = run_part(task, verify_ready, READY, cluster=cluster, context=outcome.context,
                       credentials=outcome.credentials, ready_timeout=ready_timeout,
                       health=outcome.health)
    outcome = dataclasses.replace(outcome, ready=checked.result)
    return Result(host=task.host, result=outcome, changed=written.changed,
                  diff=written.diff, failed=checked.failed)


def run_part(task: Task, part: Callable[..., Result], name: str, **kwargs: Any) -> Result:
    """``part`` as a sub-task named ``name``. One that raised fails the whole task with
    its own exception (not Nornir's "subtask failed"); one that returned a failed result
    gives it back, for the task to report with what it found."""
    try:
        return task.run(task=part, name=name, **kwargs)[0]
    except NornirSubTaskError as exc:
        failed: Result = exc.result[0]
        if failed.exception is not None:
            raise failed.exception from None
        return failed


@dataclass
class FetchReport:
    """fetch-kubeconfig's outcome on the bastion, then what the API said from there."""

    rows: list[HostOutcome]
    health: ClusterHealth | None = None
    nodes: list[NodeRow] = field(default_factory=list)
    kubectl: str | None = None

    @property
    def failed(self) -> bool:
        return any(r.status == FAILED for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hosts": [r.as_dict() for r in self.rows],
            "health": self.health.as_dict() if self.health else None,
            "nodes": [asdict(n) for n in self.nodes],
            "kubectl": self.kubectl,
        }


def run_fetch_kubeconfig(run: Run, *, context: str | None = None, switch: bool = True,
                         local_path: str | None = None,
                         tunnel_port: int = DEFAULT_TUNNEL_PORT,
                         ready_timeout: float = DEFAULT_READY_TIMEOUT) -> FetchReport:
    """fetch_kubeconfig on the bastion of ``run``, as rows and the Ready verification's
    findings."""
    run = resolve_node_ips(run)  # access_ip of nodes given by name
    bastion = run.cluster.bastion.name
    results = run.nornir.filter(name=bastion).run(
        task=fetch_kubeconfig, name="fetch-kubeconfig", cluster=run.cluster, context=context,
        switch=switch, local_path=local_path, tunnel_port=tunnel_port,
        ready_timeout=ready_timeout)
    report = FetchReport(outcomes(results))
    outcome = results[bastion][0].result
    if isinstance(outcome, FetchOutcome) and outcome.ready is not None:
        report.health = outcome.ready.health
        report.nodes = list(outcome.ready.nodes)
        report.kubectl = outcome.ready.kubectl
    return report
