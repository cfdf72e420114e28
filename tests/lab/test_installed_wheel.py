"""The package as a user gets it: the wheel, installed into a fresh venv outside this
checkout, run as the ``kubebastion`` command from a folder that holds only a Nornir config
and an inventory, with nothing of the checkout on its path (issue 14).

``scripts/test`` builds the wheel and the venv first (``scripts/build-wheel OUT --venv``)
and names the venv in ``$KUBEBASTION_WHEEL_VENV``; run alone, this module builds them
itself under /var/tmp (the lab hosts hide /tmp). It reuses the session lab, NAT removed
first, so ``nat --dry-run`` has rules to show and the deploy has NAT to configure; on a lab
no earlier module deployed (this module run alone), the deploy is a first one.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import lab
from lab.topology import PRIVATE_CIDR
from tests.figures import FIGURES
from tests.lab.helpers import REPO, write_config

# It removes the bastion's NAT and deploys: run after the modules that keep state in the lab.
# A first deploy from the session lab took 290 s on 2 loaded cores (pytest's default: 300 s).
pytestmark = [pytest.mark.lab, pytest.mark.lab_destructive, pytest.mark.timeout(900)]
VENV_ENV = "KUBEBASTION_WHEEL_VENV"
PREFIX = os.environ.get("KUBEBASTION_LAB_PREFIX") or "kbt"
#: Outside the checkout, and not under /tmp, which the lab's hosts do not share.
WORK = Path("/var/tmp") / f"kubebastion-wheel-{PREFIX}"


@pytest.fixture(scope="module")
def venv() -> Path:
    """The venv holding the installed wheel (built here unless scripts/test did)."""
    given = os.environ.get(VENV_ENV)
    if given:
        return Path(given)
    started = time.monotonic()
    built = subprocess.run([str(REPO / "scripts" / "build-wheel"), str(WORK / "build"), "--venv"],
                           capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    FIGURES.append(f"wheel built and installed into a fresh venv: "
                   f"{time.monotonic() - started:.1f} s")
    return Path(built.stdout.split()[-1])


@pytest.fixture(scope="module")
def fresh(lab_env: lab.LabState) -> lab.LabState:
    """The session lab without NAT on the bastion (the deploy puts it back)."""
    lab.reset_bastion_egress(lab_env)
    return lab_env


@pytest.fixture(scope="module")
def user_folder(fresh: lab.LabState) -> Path:
    """A user's folder: nornir_config.yaml and inventory/ (the lab's, with the kubespray
    stand-in and a wheelhouse), nothing else, outside the checkout."""
    folder = WORK / "cluster"
    if folder.exists():
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    write_config(fresh, folder)
    return folder


def kubebastion(venv: Path, folder: Path, *args: str, timeout: float = 120
                ) -> subprocess.CompletedProcess[str]:
    """The console command with only the venv on PATH, nothing of the checkout importable,
    run from ``folder``."""
    env = {"PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "COLUMNS": "200"}
    return subprocess.run([str(venv / "bin" / "kubebastion"), *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_the_venv_runs_the_installed_package_not_the_checkout(venv: Path) -> None:
    assert not venv.resolve().is_relative_to(REPO)
    probe = ("import importlib.util as u, kubebastion; print(kubebastion.__file__); "
             "print(u.find_spec('lab'), u.find_spec('tests'), u.find_spec('bench'))")
    shown = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=WORK,
                           env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    installed, specs = shown.stdout.splitlines()
    assert Path(installed).is_relative_to(venv.resolve() / "lib"), installed
    assert specs == "None None None", specs


def test_help_list_and_task_help(venv: Path, user_folder: Path) -> None:
    shown = kubebastion(venv, user_folder, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: kubebastion "), shown.stdout
    listed = kubebastion(venv, user_folder, "--list")
    assert listed.returncode == 0
    for name in ("deploy", "check", "nat", "kubespray", "admin-conf", "fetch-kubeconfig",
                 "tunnel"):
        assert f"  {name} " in listed.stdout, listed.stdout
    assert "lab." not in listed.stdout  # the lab stays in the checkout
    task_help = kubebastion(venv, user_folder, "deploy", "--help")
    assert task_help.returncode == 0 and "--dry-run" in task_help.stdout, task_help.stderr


def test_renders_the_kubespray_inventory(venv: Path, user_folder: Path,
                                         fresh: lab.LabState) -> None:
    out = WORK / "rendered"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    rendered = kubebastion(venv, user_folder, "kubespray", "--render-to", str(out))
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    inventory = yaml.safe_load((out / "hosts.yaml").read_text())
    hosts = inventory["all"]["hosts"]
    assert set(hosts) == {n.name for n in fresh.nodes}
    assert {h["ansible_host"] for h in hosts.values()} == {
        n.private_address for n in fresh.nodes}
    assert (out / "group_vars" / "all" / "kubebastion.yml").is_file()


def test_nat_dry_run_shows_the_rules_and_changes_nothing(venv: Path, user_folder: Path,
                                                         fresh: lab.LabState) -> None:
    before = lab.host_exec(fresh, "bastion", ["nft", "list", "ruleset"], timeout=60).stdout
    shown = kubebastion(venv, user_folder, "nat", "--dry-run")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "masquerade" in shown.stdout, shown.stdout  # the rules, from the packaged
    assert "net.ipv4.ip_forward = 1" in shown.stdout  # templates, in full
    assert f"ip saddr {PRIVATE_CIDR}" in shown.stdout, shown.stdout
    after = lab.host_exec(fresh, "bastion", ["nft", "list", "ruleset"], timeout=60).stdout
    assert after == before


def test_deploys_the_lab_to_every_node_ready(venv: Path, user_folder: Path,
                                            fresh: lab.LabState) -> None:
    started = time.monotonic()
    deployed = kubebastion(venv, user_folder, "deploy", "--json", timeout=900)
    FIGURES.append(f"installed wheel: kubebastion deploy {time.monotonic() - started:.1f} s")
    assert deployed.returncode == 0, deployed.stdout[-4000:] + deployed.stderr[-4000:]
    report = json.loads(deployed.stdout)
    assert report["ok"] and report["failed_step"] is None
    assert [s["name"] for s in report["steps"]] == [
        "preflight", "nat", "egress", "kubespray", "admin-conf", "fetch-kubeconfig"]
    steps = {s["name"]: s["status"] for s in report["steps"]}
    assert steps["nat"] == "changed", steps  # the installed package did the work
    fetched = next(s for s in report["steps"] if s["name"] == "fetch-kubeconfig")
    health = fetched["extra"]["health"]
    assert health["healthy"] and set(health["ready"]) == {n.name for n in fresh.nodes}
    nodes = lab.host_exec(fresh, "bastion", ["su", "-", fresh.user, "-c",
                                             "kubectl get nodes --no-headers"], timeout=60)
    assert nodes.returncode == 0, nodes.stderr
    statuses = {line.split()[0]: line.split()[1] for line in nodes.stdout.splitlines()}
    assert statuses == dict.fromkeys((n.name for n in fresh.nodes), "Ready")
