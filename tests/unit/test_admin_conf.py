"""The script that installs admin.conf for the login user on the control plane."""

from __future__ import annotations

from kubebastion.admin_conf import install_script, parse_install_output


def test_install_script_dry_run_stops_before_writing() -> None:
    dry = install_script("ubuntu", True, "kubebastion-backup-x")
    assert "install -m 600" not in dry and "would-change" in dry
    real = install_script("ubuntu", False, "kubebastion-backup-x")
    assert "install -m 600 -o ubuntu" in real and "mv -f" in real
    assert parse_install_output("path=/h/.kube/config\nstate=changed\n") == {
        "path": "/h/.kube/config", "state": "changed"}
