"""fetch-kubeconfig's pure parts and its remote committer, run here with plain sh."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from kubebastion.admin_conf import install_script, parse_install_output
from kubebastion.errors import StepError
from kubebastion.kubeconfig.certs import CertificateSANs
from kubebastion.kubeconfig.remote import CONFLICT_EXIT, MISSING, commit_script
from kubebastion.kubeconfig.task import (
    bastion_entry,
    merge_local,
    merged_text,
    redacted_diff,
    tls_name_for_tunnel,
)
from kubebastion.kubeconfig.verify import node_rows

CASES = Path(__file__).parent / "cases" / "kubeconfig"
ADMIN_V230 = (CASES / "admin_conf_v230.yaml").read_text()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_commit(target: Path, staged_text: str, expected: str, pause: float | None = None
               ) -> subprocess.CompletedProcess[str]:
    staged = target.parent / ".config.kubebastion-stage-test"
    staged.write_text(staged_text)
    backup = f"{target}.bak"
    script = commit_script(str(target), str(staged), expected, backup, pause)
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                          check=False)


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


def test_commit_replaces_backs_up_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("old")
    target.chmod(0o600)
    result = run_commit(target, "new", sha("old"))
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "new" and Path(f"{target}.bak").read_text() == "old"
    assert "backup=" in result.stdout


def test_commit_refuses_when_the_file_changed_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("someone else's edit")
    result = run_commit(target, "ours", sha("what we read"))
    assert result.returncode == CONFLICT_EXIT
    assert target.read_text() == "someone else's edit"
    assert not list(tmp_path.glob(".config.kubebastion-stage-*"))


def test_commit_creates_a_missing_file(tmp_path: Path) -> None:
    target = tmp_path / "config"
    result = run_commit(target, "first", MISSING)
    assert result.returncode == 0 and target.read_text() == "first"
    assert "backup=" not in result.stdout


def test_kill_during_commit_leaves_the_old_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("old complete")
    staged = tmp_path / ".config.kubebastion-stage-kill"
    staged.write_text("new complete")
    script = commit_script(str(target), str(staged), sha("old complete"),
                           f"{target}.bak", pause_seconds=30)
    proc = subprocess.Popen(["/bin/sh", "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while not Path(f"{target}.bak").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "old complete"
    assert run_commit(target, "new complete", sha("old complete")).returncode == 0
    assert target.read_text() == "new complete"


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


def test_node_rows_from_a_node_list() -> None:
    node_list = {"items": [
        {"metadata": {"name": "k8s-m0",
                      "labels": {"node-role.kubernetes.io/control-plane": ""}},
         "status": {"conditions": [{"type": "Ready", "status": "True"}],
                    "nodeInfo": {"kubeletVersion": "v1.32.0"}}},
        {"metadata": {"name": "k8s-w0"},
         "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}},
    ]}
    rows = node_rows(node_list)
    assert [(r.name, r.status, r.roles, r.version) for r in rows] == [
        ("k8s-m0", "Ready", "control-plane", "v1.32.0"), ("k8s-w0", "NotReady", "<none>", "")]


def test_install_script_dry_run_stops_before_writing() -> None:
    dry = install_script("ubuntu", True, "kubebastion-backup-x")
    assert "install -m 600" not in dry and "would-change" in dry
    real = install_script("ubuntu", False, "kubebastion-backup-x")
    assert "install -m 600 -o ubuntu" in real and "mv -f" in real
    assert parse_install_output("path=/h/.kube/config\nstate=changed\n") == {
        "path": "/h/.kube/config", "state": "changed"}


OTHERS = ("config.bak", "config.kubebastion-backup-notes.txt", "config.backup-20200101",
          "other.kubebastion-backup-20200101T000000Z")


def test_the_bastion_commit_keeps_the_newest_backups_of_ours_only(tmp_path: Path) -> None:
    """Each changing run leaves a backup holding admin credentials: the newest N stay."""
    target = tmp_path / "config"
    target.write_text("v0")
    for name in OTHERS:
        (tmp_path / name).write_text("not ours")
    for n in range(1, 8):
        staged = tmp_path / f".config.kubebastion-stage-{n}"
        staged.write_text(f"v{n}")
        backup = f"{target}.kubebastion-backup-2026112{n}T000000Z"
        script = commit_script(str(target), str(staged), sha(f"v{n - 1}"), backup,
                               keep_backups=3)
        done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".config.kubebastion.lock")
    assert left == sorted(["config", *OTHERS, *(f"config.kubebastion-backup-2026112{n}T000000Z"
                                                for n in (5, 6, 7))])
    assert (tmp_path / "config.kubebastion-backup-20261127T000000Z").read_text() == "v6"


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
