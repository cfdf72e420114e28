"""The stand-in's vendored files are real kubespray v2.31.0's, byte for byte.

``lab/kubespray/VENDORED`` lists them; they are compared with the unmodified release
tarball beside the project (``../shared/kubespray/``). Without the tarball (a user's machine
outside this project's CI) the comparison skips with that reason; in CI
(``KUBEBASTION_REQUIRE_LAB=1``) it fails instead.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAND_IN = REPO / "lab" / "kubespray"
TARBALL = Path(os.environ.get("KUBEBASTION_REAL_KUBESPRAY")
               or REPO.parent / "shared" / "kubespray" / "kubespray-v2.31.0.tar.gz")
TOP = "kubespray-2.31.0/"


def vendored() -> list[str]:
    lines = (STAND_IN / "VENDORED").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def real_files() -> dict[str, bytes]:
    if not TARBALL.is_file():
        if os.environ.get("KUBEBASTION_REQUIRE_LAB") == "1":
            pytest.fail(f"KUBEBASTION_REQUIRE_LAB=1 but {TARBALL} is missing")
        pytest.skip(f"real kubespray tarball not here: {TARBALL}")
    wanted = {TOP + name for name in vendored()}
    files: dict[str, bytes] = {}
    with tarfile.open(TARBALL) as tar:
        for member in tar.getmembers():
            if member.name in wanted and member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                files[member.name.removeprefix(TOP)] = extracted.read()
    return files


def test_vendored_files_are_real_kubesprays_unchanged() -> None:
    real = real_files()
    names = vendored()
    assert {"requirements.txt", "ansible.cfg", "LICENSE",
            "roles/validate_inventory/tasks/main.yml",
            "roles/kubespray_defaults/vars/main/checksums.yml",
            "roles/kubernetes/preinstall/tasks/0040-verify-settings.yml",
            # day two: the top-level playbooks, remove-node.yml's own play list, and the
            # roles that cordon, drain, uncordon and delete nodes with kubectl
            "scale.yml", "remove-node.yml", "upgrade-cluster.yml", "reset.yml",
            "playbooks/remove_node.yml", "roles/remove_node/pre_remove/tasks/main.yml",
            "roles/remove-node/post-remove/tasks/main.yml",
            "roles/upgrade/pre-upgrade/tasks/main.yml",
            "roles/upgrade/post-upgrade/tasks/main.yml"} <= set(names)
    assert sorted(real) == sorted(names), "listed in VENDORED but not in the release"
    changed = [name for name in names if (STAND_IN / name).read_bytes() != real[name]]
    assert changed == []


def test_stand_in_files_say_what_they_replace() -> None:
    """Every file that is not vendored and shares a real file's path says it is a stand-in."""
    real = set(vendored())
    own = ["playbooks/cluster.yml", "playbooks/reset.yml", "roles/bootstrap_os/tasks/main.yml",
           "roles/kubernetes/preinstall/tasks/main.yml", "playbooks/scale.yml",
           "playbooks/upgrade_cluster.yml", "roles/reset/tasks/main.yml",
           "roles/remove-node/remove-etcd-node/tasks/main.yml"]
    for name in own:
        assert name not in real
        assert "stand-in for kubespray v2.31.0's" in (STAND_IN / name).read_text(), name
