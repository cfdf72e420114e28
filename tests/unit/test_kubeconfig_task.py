"""fetch-kubeconfig's local side: the bastion entry, the merge into the operator's kubeconfig
(atomic, backed up, idempotent), the redacted diff and the tunnel's TLS name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubebastion.errors import StepError
from kubebastion.kubeconfig.certs import CertificateSANs
from kubebastion.kubeconfig.task import (
    bastion_entry,
    merge_local,
    merged_text,
    redacted_diff,
    tls_name_for_tunnel,
)

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
