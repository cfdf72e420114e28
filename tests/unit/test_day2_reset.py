"""reset's confirmation and what it forgets on the bastion (pure)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubebastion.day2.reset import (
    check_confirmation,
    forget_command,
    parse_forgotten,
    state_paths,
)
from kubebastion.errors import ConfigError
from kubebastion.kubespray.layout import RemoteLayout
from tests.unit.test_day2_nodes import cluster_of

LAYOUT = RemoteLayout(checkout="/h/kubespray", venv="/h/venv", logs="/h/logs",
                      key="/h/.ssh/id_ed25519", known_hosts="/h/.ssh/kubebastion_known_hosts",
                      wheel_cache="/h/.cache", uv_tool="/h/.local/uv")


@pytest.mark.parametrize(("typed", "message"), [
    (None, "type the cluster name 'demo' or pass --yes-destroy demo"),
    ("", "type the cluster name 'demo'"),
    ("yes", "'yes' is not the cluster name 'demo'"),
    ("demo2", "'demo2' is not the cluster name 'demo'"),
], ids=["no terminal", "empty", "yes is not enough", "another name"])
def test_reset_needs_the_cluster_name(typed: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_confirmation(cluster_of("m0:cp w0:w"), typed)


def test_the_cluster_name_confirms() -> None:
    check_confirmation(cluster_of("m0:cp w0:w"), " demo\n")


def test_state_paths_keep_the_checkout_unless_all() -> None:
    cluster = cluster_of("m0:cp w0:w")
    kept = state_paths(LAYOUT, cluster, everything=False)
    assert kept == ["/h/logs/kubespray-applied-demo.json", "/h/kubespray/inventory/demo",
                    "/h/.ssh/kubebastion_known_hosts"]
    assert state_paths(LAYOUT, cluster, everything=True) == [*kept, "/h/kubespray", "/h/venv"]


def test_forget_command_removes_what_exists_and_says_so(tmp_path: Path) -> None:
    there, absent, odd = tmp_path / "record.json", tmp_path / "absent", tmp_path / "a b'c"
    there.write_text("{}")
    odd.mkdir()
    paths = [str(there), str(absent), str(odd)]
    dry = subprocess.run(["sh", "-c", forget_command(paths, dry_run=True)],
                         capture_output=True, text=True, check=True).stdout
    assert parse_forgotten(dry) == [str(there), str(odd)] and there.exists()
    real = subprocess.run(["sh", "-c", forget_command(paths, dry_run=False)],
                          capture_output=True, text=True, check=True).stdout
    assert parse_forgotten(real) == [str(there), str(odd)]
    assert not there.exists() and not odd.exists()
