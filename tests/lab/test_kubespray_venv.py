"""The bastion's kubespray venv with kubespray v2.31.0's real requirements (issue 16, item
1), and ansible's forks (item 2), against the lab.

The lab's bastion is offline: the wheels and uv are downloaded here once (the operator's
cache, ~/.cache/kubebastion/wheelhouse) and sent as one tar stream. Each test starts from
a bastion without venv (``--preflight``: kubespray's own checks, the venv and everything
before them, without the long run). Tests run in file order.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import lab
from kubebastion.kubespray.wheelhouse import UV_VERSION
from tests.lab.helpers import (
    WHEELHOUSE,
    Invocation,
    as_root,
    invoke_kubespray,
    write_config,
)

pytestmark = pytest.mark.lab


def venv_row(ran: Invocation) -> dict[str, Any]:
    rows = [r for r in ran.document["rows"] if r["data"].get("part") == "venv"]
    assert len(rows) == 1, ran.document["rows"]
    return rows[0]


def home(state: lab.LabState) -> str:
    return f"/home/{state.user}"


def remove_venv(state: lab.LabState) -> None:
    """The venv and its builds go (moved aside at once, deleted in the background: ~50,000
    files take minutes to remove on a loaded machine); the wheelhouse sent earlier stays."""
    gone = as_root(state, "bastion", "set -e; trash=$(mktemp -d "
                                     f"{home(state)}/.kubebastion-test-trash.XXXXXX); "
                                     f"for d in {home(state)}/kubespray-venv "
                                     f"{home(state)}/kubespray-venv.*; do "
                                     '[ -e "$d" ] || [ -L "$d" ] || continue; '
                                     'mv "$d" "$trash/"; done; '
                                     'setsid rm -rf "$trash" >/dev/null 2>&1 < /dev/null &')
    assert gone.returncode == 0, gone.stderr


def pyvenv_cfg(state: lab.LabState) -> str:
    return as_root(state, "bastion", f"cat {home(state)}/kubespray-venv/pyvenv.cfg").stdout


def wheelhouse_markers(state: lab.LabState) -> dict[str, str]:
    """Each wheelhouse folder on the bastion -> its marker's inode and mtime (changed by
    any new send)."""
    listing = as_root(state, "bastion", "for m in "
                      f"{home(state)}/.cache/kubebastion/wheelhouse/*/.kubebastion-complete;"
                      ' do [ -f "$m" ] && stat -c "%n %i %Y" "$m"; done; true').stdout
    return {line.split()[0]: " ".join(line.split()[1:]) for line in listing.splitlines()}


@pytest.fixture(scope="module")
def config(lab_env: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Kubespray settings for the lab; the bastion starts without venv or wheelhouse."""
    folder = tmp_path_factory.mktemp("venv-config")
    path = write_config(lab_env, folder)
    as_root(lab_env, "bastion", f"rm -rf {home(lab_env)}/.cache/kubebastion/wheelhouse")
    remove_venv(lab_env)
    yield path
    remove_venv(lab_env)  # the next module builds its own


def with_settings(config: Path, **settings: Any) -> Path:
    """The same config with these kubespray settings changed."""
    defaults_file = config.parent / "inventory" / "defaults.yaml"
    defaults = yaml.safe_load(defaults_file.read_text())
    defaults["data"]["kubespray"].update(settings)
    defaults_file.write_text(yaml.safe_dump(defaults))
    return config


def test_a_fresh_bastion_gets_a_venv_built_by_uv_sent_with_the_wheelhouse(
        config: Path, lab_env: lab.LabState) -> None:
    ran = invoke_kubespray(config, "--preflight")
    assert ran.code == 0, ran.document
    row = venv_row(ran)
    assert row["status"] == "changed"
    assert f"with uv (uv {UV_VERSION}, sent with the wheelhouse)" in row["detail"], row
    assert "uv included) to" in row["detail"] and "in one stream" in row["detail"], row
    # uv made it: it writes its version into the venv's pyvenv.cfg, venv/pip do not
    assert f"uv = {UV_VERSION}" in pyvenv_cfg(lab_env)
    played = as_root(lab_env, "bastion", f"{home(lab_env)}/kubespray-venv/bin/ansible-playbook "
                                         "--version")
    assert played.returncode == 0 and "core 2.18" in played.stdout, played.stdout
    assert len(wheelhouse_markers(lab_env)) == 1


def test_the_chosen_forks_and_why_are_in_the_report(config: Path) -> None:
    ran = invoke_kubespray(config, "--preflight")
    assert ran.code == 0, ran.document
    forks = ran.document["preflight"]["forks"]
    nodes = len(ran.document["preflight"]["recap"])
    # the lab's bastion has this machine's cores and memory: the hosts are the limit
    assert forks["value"] == nodes and forks["hosts"] == nodes, forks
    assert forks["reason"].startswith(f"one per host ({nodes} hosts)"), forks
    assert f"forks {nodes}: one per host" in " ".join(
        r["detail"] for r in ran.document["rows"] if r["data"].get("part") == "preflight")


def test_a_second_deploy_sends_nothing(config: Path, lab_env: lab.LabState) -> None:
    """Up to date: nothing sent, nothing built. Venv gone: rebuilt with uv from the
    wheelhouse already there, which is not sent again (its marker is untouched)."""
    before = wheelhouse_markers(lab_env)
    ran = invoke_kubespray(config, "--preflight")
    assert ran.code == 0, ran.document
    assert venv_row(ran)["status"] == "ok", venv_row(ran)
    remove_venv(lab_env)
    ran = invoke_kubespray(config, "--preflight")
    assert ran.code == 0, ran.document
    detail = venv_row(ran)["detail"]
    assert "the wheelhouse was already on the bastion" in detail and "nothing sent" in detail
    assert "with uv (" in detail, detail
    assert wheelhouse_markers(lab_env) == before


def test_without_uv_the_venv_is_built_with_pip_and_the_report_says_why(
        config: Path, lab_env: lab.LabState, tmp_path: Path) -> None:
    """A ready-made wheelhouse (an offline operator's) without uv's wheel: pip, and why."""
    cached = next(d for d in WHEELHOUSE.iterdir()
                  if d.is_dir() and (d / "ansible-11.13.0-py3-none-any.whl").is_file())
    prebuilt = tmp_path / "wheels"
    prebuilt.mkdir()
    for wheel in cached.glob("*.whl"):
        shutil.copy(wheel, prebuilt / wheel.name)
    with_settings(config, wheelhouse=str(prebuilt))
    remove_venv(lab_env)
    ran = invoke_kubespray(config, "--preflight")
    assert ran.code == 0, ran.document
    detail = venv_row(ran)["detail"]
    assert f"with pip (no uv wheel (uv-*.whl) in the wheelhouse {prebuilt})" in detail, detail
    assert "uv = " not in pyvenv_cfg(lab_env)


def test_uv_that_does_not_run_on_the_bastion_falls_back_to_pip(
        config: Path, lab_env: lab.LabState) -> None:
    """The uv sent with the wheelhouse is there but cannot run (here: not executable):
    the build script finds out, uses pip, and the report gives uv's own error."""
    with_settings(config, wheelhouse=str(WHEELHOUSE))
    if not wheelhouse_markers(lab_env):  # run alone: the wheelhouse is not there yet
        assert invoke_kubespray(config, "--preflight").code == 0
    remove_venv(lab_env)
    broken = as_root(lab_env, "bastion", f"chmod a-x {home(lab_env)}/.cache/kubebastion/"
                                         "wheelhouse/*/uv")
    assert broken.returncode == 0, broken.stderr
    try:
        ran = invoke_kubespray(config, "--preflight")
    finally:
        as_root(lab_env, "bastion", f"chmod a+x {home(lab_env)}/.cache/kubebastion/"
                                    "wheelhouse/*/uv")
    assert ran.code == 0, ran.document
    detail = venv_row(ran)["detail"]
    assert "with pip (uv did not run on the bastion (" in detail, detail
    assert "is missing or not executable" in detail, detail
