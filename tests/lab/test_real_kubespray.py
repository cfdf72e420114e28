"""Real kubespray v2.31.0, run by kubebastion against the lab (issue 11): its own checks on
our inventory, with SSH trust and sudo as a user would have them.

The unmodified upstream tarball (``../shared/kubespray/``, sha256 pinned) is uploaded by
kubebastion; the venv is built on the bastion from its real ``requirements.txt`` (ansible
11.13.0) through the wheelhouse path (pip download here, cached under
~/.cache/kubebastion, uploaded: the lab bastion has no internet); the inventory is
rendered by kubebastion, the bastion's key authorized on the nodes, host key checking on,
and become with a sudo password (the lab switched to password mode for this module).
Then ``invoke kubespray --preflight`` runs real ``cluster.yml --tags facts,asserts``.
Only the install phase cannot run here (downloads, packages): the stand-in's job.
The venv's build time and size are printed at the end of every session.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

import lab
from kubebastion import secrets as kb_secrets
from kubebastion.kubespray import source as src
from kubebastion.kubespray import wheelhouse as wh
from kubebastion.kubespray.deploy import settings_for
from kubebastion.kubespray.task import (
    ensure_kubespray_source,
    ensure_kubespray_venv,
    gather_bastion_facts,
)
from kubebastion.runtime import build_run
from tests.figures import record_figure
from tests.lab import helpers
from tests.lab.helpers import INVOKE, REPO, WHEELHOUSE, Invocation
from tests.labgate import REAL_KUBESPRAY_SHA256, require_real_kubespray

# The first test also builds the real venv (a fresh machine downloads 68 MB of wheels first)
# and the module-scoped fixtures run inside its timeout: more than the suite's 300 s.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(900), pytest.mark.filterwarnings(
    "ignore::nornir.core.exceptions.ConflictingConfigurationWarning")]

SUDO_PASSWORD = "kb-real-" + secrets.token_hex(6)
IP_TASK = "kubernetes/preinstall : Stop if ip var does not match local ips"
WRONG_IP = "198.18.1.250"  # inside private_cidr, so kubebastion accepts it; no host has it

#: The real playbook is slower than the stand-in, and sudo asks this module's password.
invoke_kubespray = partial(helpers.invoke_kubespray, timeout=900, sudo_password=SUDO_PASSWORD,
                           json_required=False)
as_root = partial(helpers.as_root, timeout=120)


def forget_kubespray(state: lab.LabState) -> None:
    """No checkout, venv, logs, keys or trust left on the lab by this or another module."""
    home = f"/home/{state.user}"
    for host in ("bastion", *[n.name for n in state.nodes]):
        as_root(state, host, f"rm -rf {home}/kubespray {home}/kubespray.previous "
                f"{home}/kubespray-venv {home}/kubebastion-logs {home}/.cache/kubebastion "
                f"{home}/.ssh/id_ed25519 {home}/.ssh/id_ed25519.pub {home}/.ssh/known_hosts "
                f"{home}/.ssh/kubebastion_known_hosts /tmp/k8s-* && "
                f"sed -i '/kubebastion@bastion/d' {home}/.ssh/authorized_keys")


def write_tarball_config(state: lab.LabState, folder: Path, tarball: Path, *,
                 sha256: str = REAL_KUBESPRAY_SHA256, ip: dict[str, str] | None = None) -> Path:
    """The lab's inventory with the real tarball as kubespray source; ``ip``: host -> a
    kubespray ``ip`` for it."""
    inventory = folder / "inventory"
    inventory.mkdir(parents=True, exist_ok=True)
    hosts = yaml.safe_load((state.inventory_dir / "hosts.yaml").read_text())
    for name, address in (ip or {}).items():
        hosts[name].setdefault("data", {})["ip"] = address
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (inventory / "groups.yaml").write_text((state.inventory_dir / "groups.yaml").read_text())
    defaults = yaml.safe_load((state.inventory_dir / "defaults.yaml").read_text())
    defaults["data"]["kubespray"] = {"source": str(tarball), "source_sha256": sha256,
                                     "wheelhouse": str(WHEELHOUSE)}
    (inventory / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    return lab.config_beside(state, folder)


@pytest.fixture(scope="module")
def tarball() -> Path:
    return require_real_kubespray()


@pytest.fixture(scope="module")
def real_lab(lab_env: lab.LabState, lab_params: dict[str, Any],
             tarball: Path) -> Iterator[lab.LabState]:
    """The session lab with sudo asking for a password, and nothing of kubespray on it."""
    state = lab.up(**lab_params, sudo_password=SUDO_PASSWORD)
    forget_kubespray(state)
    try:
        yield state
    finally:
        forget_kubespray(state)
        lab.up(**lab_params)


@pytest.fixture(scope="module")
def config(real_lab: lab.LabState, tarball: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tarball_config(real_lab, tmp_path_factory.mktemp("real-kubespray"), tarball)


@pytest.fixture(scope="module")
def venv_build(real_lab: lab.LabState, config: Path) -> dict[str, float]:
    """kubebastion's source and venv parts on a clean bastion, the venv timed: wheels
    from the operator's cache (downloaded once per requirements digest), sent as one
    stream, installed --no-index on the bastion by uv (or pip where uv cannot run)."""
    os.environ[kb_secrets.SUDO_PASSWORD_ENV] = SUDO_PASSWORD
    run = build_run(str(config))
    try:
        settings = settings_for(run)
        assert settings.wheelhouse is not None
        bastion = run.nornir.filter(name="bastion")
        facts = bastion.run(task=gather_bastion_facts)["bastion"][0].result
        requirements = src.local_requirements(settings.source)
        assert requirements is not None and b"ansible==11.13.0" in requirements
        started = time.monotonic()
        wheels = wh.wheelhouse_for(settings.wheelhouse, requirements, facts)
        download = time.monotonic() - started
        placed = bastion.run(task=ensure_kubespray_source, settings=settings, facts=facts)
        assert not placed.failed, placed["bastion"][0].exception
        started = time.monotonic()
        built = bastion.run(task=ensure_kubespray_venv, settings=settings, facts=facts)
        build = time.monotonic() - started
        assert not built.failed, built["bastion"][0].exception
        assert built["bastion"][0].changed
    finally:
        run.close()
        os.environ.pop(kb_secrets.SUDO_PASSWORD_ENV, None)
        kb_secrets.set_sudo_password(None)
    home = f"/home/{real_lab.user}"
    size = int(as_root(real_lab, "bastion", f"du -sbL {home}/kubespray-venv/").stdout.split()[0])
    wheel_bytes = sum(p.stat().st_size for p in wh.wheel_files(wheels))
    record_figure(f"real kubespray v2.31.0 venv (ansible 11.13.0): built on the lab bastion "
                  f"in {build:.1f} s (wheelhouse sent, then uv or pip install --no-index), "
                  f"{size / 1e6:.0f} MB; wheels {wheel_bytes / 1e6:.0f} MB "
                  f"({len(wh.wheel_files(wheels))} files, operator side {download:.1f} s)")
    return {"build": build, "size": size}


@pytest.fixture(scope="module")
def preflight(venv_build: dict[str, float], config: Path) -> Invocation:
    ran = invoke_kubespray(config, "--preflight")
    record_figure(f"real kubespray v2.31.0 invoke kubespray --preflight (cluster.yml --tags "
                  f"facts,asserts, 3 nodes): {ran.seconds:.1f} s, of which the playbook "
                  f"{(ran.document.get('preflight') or {}).get('seconds', 0):.1f} s")
    return ran


def test_the_venv_is_the_real_one(venv_build: dict[str, float], real_lab: lab.LabState) -> None:
    home = f"/home/{real_lab.user}"
    # importlib.metadata, not pip: a venv built by uv has no pip in it.
    listing = ("import importlib.metadata as m; "
               "print(*sorted(f'{d.name}=={d.version}' for d in m.distributions()))")
    versions = as_root(real_lab, "bastion",
                       f"{home}/kubespray-venv/bin/python -c {shlex.quote(listing)}").stdout.split()
    assert {"ansible==11.13.0", "cryptography==46.0.7", "jmespath==1.1.0",
            "netaddr==1.3.0"} <= set(versions)
    assert any(v.startswith("ansible-core==2.18.") for v in versions)
    assert venv_build["size"] > 100e6  # ansible 11's collections: hundreds of MB


def test_real_preflight_passes_on_every_node(preflight: Invocation,
                                             real_lab: lab.LabState) -> None:
    assert preflight.code == 0, preflight.stderr[-3000:]
    nodes = [n.name for n in real_lab.nodes]
    rows = {r["host"]: r for r in preflight.rows("preflight")}
    assert sorted(rows) == sorted([*nodes, "bastion"])
    recap = preflight.document["preflight"]["recap"]
    assert sorted(recap) == sorted(nodes)
    for name in nodes:
        assert rows[name]["status"] == "ok", rows[name]
        assert recap[name]["ok"] > 0
        assert (recap[name]["failed"], recap[name]["unreachable"], recap[name]["changed"]) == (
            0, 0, 0)
    assert preflight.rows("playbook") == []  # --preflight never starts the long run
    # Uploaded from the tarball, checksum checked; venv already built; no second run.
    (source,) = preflight.rows("source")
    assert source["status"] == "ok"
    assert preflight.rows("venv")[0]["status"] == "ok"
    assert preflight.rows("authorized_keys")[0]["status"] == "changed"


def test_real_preflight_ran_with_host_keys_checked_and_sudo_password(
        preflight: Invocation, real_lab: lab.LabState) -> None:
    home = f"/home/{real_lab.user}"
    # ansible checked the nodes' keys against the copy of the operator's verified ones and
    # never wrote (nor accepted) a key of its own.
    assert as_root(real_lab, "bastion", f"test -e {home}/.ssh/known_hosts").returncode == 1
    log = as_root(real_lab, "bastion", f"cat {home}/kubebastion-logs/*preflight*.log").stdout
    assert "Gather minimal facts" in log and "Stop if non systemd OS type" in log
    assert SUDO_PASSWORD not in log
    # The nodes' sudo really wants that password: become used it.
    node = real_lab.nodes[0].name
    probe = as_root(real_lab, node, f"runuser -u {real_lab.user} -- sudo -n true")
    assert probe.returncode != 0 and "password" in probe.stderr


def test_real_preflight_twice_changes_nothing(preflight: Invocation, config: Path) -> None:
    again = invoke_kubespray(config, "--preflight")
    assert again.code == 0, again.stderr[-3000:]
    assert again.document["changed"] is False
    assert {r["status"] for r in again.document["rows"]} == {"ok"}


def test_a_wrong_checksum_stops_before_any_upload(real_lab: lab.LabState, tarball: Path,
                                                  tmp_path: Path) -> None:
    home = f"/home/{real_lab.user}"
    marker = f"cat {home}/kubespray/{src.MARKER}"
    before = as_root(real_lab, "bastion", marker).stdout
    bad = write_tarball_config(real_lab, tmp_path, tarball, sha256="ab" * 32)
    ran = invoke_kubespray(bad, "--preflight", timeout=120)
    assert ran.code == 2
    assert f"has sha256 {REAL_KUBESPRAY_SHA256}, not the expected {'ab' * 32}" in ran.stderr
    assert as_root(real_lab, "bastion", marker).stdout == before


def test_an_ip_that_is_not_the_hosts_is_stopped_by_kubesprays_own_assertion(
        preflight: Invocation, real_lab: lab.LabState, tmp_path: Path, tarball: Path) -> None:
    bad = write_tarball_config(real_lab, tmp_path, tarball, ip={"k8s-w1": WRONG_IP})
    ran = invoke_kubespray(bad, "--preflight")
    assert ran.code == 1, ran.stderr[-3000:]
    rows = {r["host"]: r for r in ran.rows("preflight")}
    failed = rows["k8s-w1"]
    assert failed["status"] == "failed"
    assert failed["data"]["task"] == IP_TASK
    assert failed["data"]["message"].endswith(f"do not contain '{WRONG_IP}'")
    assert "198.18.1.101" in failed["data"]["message"]  # the addresses it does have
    assert rows["k8s-m0"]["status"] == rows["k8s-w0"]["status"] == "ok"
    # The operator's one-line summary names the host, the task and the message too.
    assert "k8s-w1" in ran.stderr and IP_TASK in ran.stderr
    assert f"do not contain '{WRONG_IP}'" in ran.stderr


def test_deploy_stops_at_kubesprays_checks_before_the_long_run(
        preflight: Invocation, real_lab: lab.LabState, tmp_path: Path, tarball: Path) -> None:
    import jsonschema

    bad = write_tarball_config(real_lab, tmp_path, tarball, ip={"k8s-w1": WRONG_IP})
    env = {**os.environ, kb_secrets.SUDO_PASSWORD_ENV: SUDO_PASSWORD}
    proc = subprocess.run([INVOKE, "deploy", "--config", str(bad), "--json",
                           "--steps", "kubespray"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    jsonschema.validate(report, json.loads((REPO / "docs" / "deploy-report.schema.json")
                                           .read_text()))
    (step,) = report["steps"]
    assert (step["name"], step["status"]) == ("kubespray", "failed")
    parts = [r["data"]["part"] for r in step["hosts"]]
    assert "playbook" not in parts  # cluster.yml's long run never started
    (stopped,) = [r for r in step["hosts"] if r["status"] == "failed" and r["host"] == "k8s-w1"]
    assert stopped["data"]["task"] == IP_TASK
    assert step["extra"]["preflight"]["failed_hosts"] == ["k8s-w1"]
    assert "playbook" not in step["extra"]
    assert "k8s-w1" in step["detail"] and IP_TASK in step["detail"]
