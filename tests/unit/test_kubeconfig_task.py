"""fetch-kubeconfig's local side: the bastion entry, the merge into the operator's kubeconfig
(atomic, backed up, idempotent), the redacted diff and the tunnel's TLS name; and the task
sequence's parts (a part's failure reported in its own words)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from nornir.core import Nornir
from nornir.core.inventory import Host, Hosts, Inventory
from nornir.core.task import Result, Task
from nornir.plugins.runners import SerialRunner

from kubebastion.api import ClusterHealth
from kubebastion.errors import StepError
from kubebastion.kubeconfig.certs import CertificateSANs
from kubebastion.kubeconfig.task import (
    KUBECONFIG,
    READY,
    FetchOutcome,
    bastion_entry,
    merge_local,
    merged_text,
    redacted_diff,
    run_part,
    tls_name_for_tunnel,
)
from kubebastion.kubeconfig.verify import ReadyReport
from kubebastion.report import outcomes

CASES = Path(__file__).parent / "cases" / "kubeconfig"
ADMIN_V230 = (CASES / "admin_conf_v230.yaml").read_text()


def test_bastion_entry_renames_and_points_at_the_control_plane() -> None:
    entry = bastion_entry(ADMIN_V230, "lab", "https://198.18.1.10:6443")
    assert [c["name"] for c in entry["clusters"]] == ["lab"]
    assert entry["clusters"][0]["cluster"]["server"] == "https://198.18.1.10:6443"
    assert entry["current-context"] == "lab"


def test_merge_is_idempotent_and_keeps_other_contexts() -> None:
    existing = (CASES / "existing_multi.yaml").read_text()
    merge = merged_text(bastion_entry(ADMIN_V230, "lab", "https://198.18.1.10:6443"), True)
    once = merge(existing, "existing")
    assert merge(once, "existing") == once
    names = {c["name"] for c in yaml.safe_load(once)["contexts"]}
    assert "lab" in names and {c["name"] for c in yaml.safe_load(existing)["contexts"]} <= names


def test_redacted_diff_never_shows_credentials() -> None:
    diff = redacted_diff("", ADMIN_V230, "/home/u/.kube/config")
    key_data = yaml.safe_load(ADMIN_V230)["users"][0]["user"]["client-key-data"]
    assert key_data not in diff
    assert "client-key-data: <redacted sha256:" in diff


def test_merge_local_is_atomic_backed_up_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text((CASES / "existing_multi.yaml").read_text())
    entry = bastion_entry(ADMIN_V230, "lab", "https://127.0.0.1:16443", "localhost")
    changed, backup = merge_local(path, entry, False, dry_run=False)
    assert changed and Path(backup).exists()
    assert path.stat().st_mode & 0o777 == 0o600
    assert merge_local(path, entry, False, dry_run=False) == (False, "")
    cluster = next(c for c in yaml.safe_load(path.read_text())["clusters"]
                   if c["name"] == "lab")
    assert cluster["cluster"]["tls-server-name"] == "localhost"


def test_tls_name_for_tunnel() -> None:
    sans = CertificateSANs(("*.example", "kubernetes", "k8s-m0"), ("127.0.0.1",))
    assert tls_name_for_tunnel(sans, "k8s-m0") == "k8s-m0"
    assert tls_name_for_tunnel(sans, "other") == "kubernetes"
    with pytest.raises(StepError, match="no DNS name"):
        tls_name_for_tunnel(CertificateSANs((), ("10.0.0.1",)), "k8s-m0")


OTHERS = ("config.bak", "config.kubebastion-backup-notes.txt", "config.backup-20200101",
          "other.kubebastion-backup-20200101T000000Z")


def test_merge_local_keeps_the_newest_backups_of_ours_only(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text((CASES / "existing_multi.yaml").read_text())
    for name in OTHERS:
        (tmp_path / name).write_text("not ours")
    old = [tmp_path / f"config.kubebastion-backup-2026010{n}T000000Z" for n in range(1, 5)]
    for backup in old:
        backup.write_text("old")
    entry = bastion_entry(ADMIN_V230, "lab", "https://127.0.0.1:16443", "localhost")
    changed, backup = merge_local(path, entry, False, dry_run=False, keep_backups=2)
    assert changed
    ours = sorted(p for p in tmp_path.iterdir() if ".kubebastion-backup-2" in p.name
                  and p.name.startswith("config."))
    assert ours == [old[-1], Path(backup)]
    assert all((tmp_path / name).exists() for name in OTHERS)


def one_host_nornir() -> Nornir:
    return Nornir(inventory=Inventory(hosts=Hosts({"bastion": Host("bastion")})),
                  runner=SerialRunner())


def test_a_part_that_raised_fails_the_task_with_its_own_message() -> None:
    """Not Nornir's "Subtask: ... (failed)": the row says what the part said."""
    def part(task: Task) -> Result:
        raise StepError("no healthy control plane to take admin.conf from")

    def whole(task: Task) -> Result:
        run_part(task, part, KUBECONFIG)
        return Result(host=task.host, result="not reached")

    results = one_host_nornir().run(task=whole)
    row, = outcomes(results)
    assert row.status == "failed"
    assert row.detail == "no healthy control plane to take admin.conf from"


def test_a_part_that_failed_with_its_findings_gives_them_back() -> None:
    health = ClusterHealth(False, "API v1, 1/2 nodes Ready (not Ready: k8s-w0)",
                           "v1", ("k8s-m0",), ("k8s-w0",))

    def part(task: Task) -> Result:
        return Result(host=task.host, result=ReadyReport(health, timeout=5), failed=True)

    def whole(task: Task) -> Result:
        checked = run_part(task, part, READY)
        outcome = FetchOutcome("lab", "/home/kb/.kube/config", "https://198.18.1.10:6443",
                               "k8s-m0", "", ready=checked.result)
        return Result(host=task.host, result=outcome, failed=checked.failed)

    results = one_host_nornir().run(task=whole)
    main = results["bastion"][0]
    assert main.failed and main.exception is None
    assert main.result.summary == ("nodes not Ready after 5 s: API v1, 1/2 nodes Ready "
                                   "(not Ready: k8s-w0)")
    data = main.result.as_dict()
    assert data["context"] == "lab" and data["ready"]["health"]["not_ready"] == ("k8s-w0",)
    assert "credentials" not in data and "health" not in data


def test_fetch_outcome_summary_when_every_node_is_ready() -> None:
    health = ClusterHealth(True, "API v1, 2/2 nodes Ready", "v1", ("k8s-m0", "k8s-w0"))
    outcome = FetchOutcome("lab", "/home/kb/.kube/config", "https://198.18.1.10:6443",
                           "k8s-m0", "", ready=ReadyReport(health))
    assert outcome.summary == ("context lab in /home/kb/.kube/config -> "
                               "https://198.18.1.10:6443; API v1, 2/2 nodes Ready")
    assert "ready" not in FetchOutcome("lab", "p", "s", "k8s-m0", "").as_dict()
