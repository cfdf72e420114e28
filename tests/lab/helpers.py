"""Helpers of the lab tests (tests/lab/): running ``invoke`` as an operator does, a copy of
the lab's inventory with kubespray settings, and commands inside lab hosts. One place, so
that a test module never imports another test module."""

from __future__ import annotations

import json
import os
import platform
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import lab
from kubebastion import secrets as kb_secrets
from kubebastion.kubespray.bastion import BastionFacts
from kubebastion.kubespray.settings import default_wheelhouse
from kubebastion.kubespray.wheelhouse import wheelhouse_for

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).with_name("invoke"))
STAND_IN = REPO / "lab" / "kubespray"
#: Kept between sessions: the wheels only depend on requirements.txt and the bastion's Python.
WHEELHOUSE = default_wheelhouse()


def invoke_env(env: dict[str, str] | None = None, *, columns: bool = True) -> dict[str, str]:
    """This process's environment without the sudo password (a test that means one passes it
    in ``env``); with ``columns``, 200 columns, since rich folds tables to the terminal's
    width."""
    full = {k: v for k, v in os.environ.items() if k != kb_secrets.SUDO_PASSWORD_ENV}
    if columns:
        full["COLUMNS"] = "200"
    full.update(env or {})
    return full


def invoke(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
           columns: bool = True) -> subprocess.CompletedProcess[str]:
    """``invoke ARGS`` in the checkout, its output captured."""
    return subprocess.run([INVOKE, *args], cwd=REPO, env=invoke_env(env, columns=columns),
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Invocation:
    """An ``invoke kubespray --json`` run: exit code, its JSON report, stderr, wall time."""

    code: int
    document: dict[str, Any]
    stderr: str
    seconds: float

    def rows(self, part: str) -> list[dict[str, Any]]:
        return [r for r in self.document["rows"] if r["data"].get("part") == part]


def invoke_kubespray(config: Path, *args: str, timeout: float = 600,
                     sudo_password: str | None = None, json_required: bool = True
                     ) -> Invocation:
    """``invoke kubespray --config CONFIG --json ARGS``. Without JSON on stdout the test fails
    there (``json_required``), or the document is empty and stdout is kept after stderr."""
    env = {kb_secrets.SUDO_PASSWORD_ENV: sudo_password} if sudo_password is not None else None
    started = time.monotonic()
    proc = subprocess.run([INVOKE, "kubespray", "--config", str(config), "--json", *args],
                          cwd=REPO, env=invoke_env(env, columns=False), capture_output=True,
                          text=True, timeout=timeout, check=False)
    seconds = time.monotonic() - started
    if json_required:
        try:
            document = json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"no JSON from invoke kubespray (exit {proc.returncode}):\n"
                        f"{proc.stdout}\n{proc.stderr}")
        return Invocation(proc.returncode, document, proc.stderr, seconds)
    try:
        document = json.loads(proc.stdout)
    except ValueError:
        document = {}
    return Invocation(proc.returncode, document, proc.stderr + proc.stdout, seconds)


def write_config(state: lab.LabState, folder: Path, *, kubespray_vars: dict[str, Any] | None = None
                 ) -> Path:
    """The lab's inventory, plus kubespray settings (upload the stand-in, build the venv
    from a wheelhouse) and optional kubespray_vars."""
    folder.mkdir(parents=True, exist_ok=True)
    inventory = folder / "inventory"
    inventory.mkdir(exist_ok=True)
    for name in ("hosts.yaml", "groups.yaml"):
        (inventory / name).write_text((state.inventory_dir / name).read_text())
    defaults = yaml.safe_load((state.inventory_dir / "defaults.yaml").read_text())
    defaults["data"].setdefault("kubespray", {"source": str(STAND_IN),
                                              "wheelhouse": str(WHEELHOUSE),
                                              "ready_timeout": 60})
    if kubespray_vars:
        defaults["data"]["kubespray_vars"] = kubespray_vars
    (inventory / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    return lab.config_beside(state, folder)


def as_root(state: lab.LabState, host: str, command: str, timeout: float = 60
            ) -> subprocess.CompletedProcess[str]:
    return lab.host_exec(state, host, ["sh", "-c", command], timeout=timeout)


def as_user(state: lab.LabState, host: str, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` as the lab's login user on ``host`` (its own home, kubeconfig, keys)."""
    return lab.host_exec(state, host, ["su", "-", state.user, "-c", command], timeout=60)


# The kubespray stand-in (lab/kubespray) on the bastion, run by hand with ansible-playbook
# (tests/lab/test_standin_playbook.py, test_standin_day_two.py).
WORK = "standin-test"
EXTRA_SANS = ["198.18.0.2", "k8s-api.lab.test"]  # under the lab user's home on the bastion
SSH_ARGS = "-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts} "
MULTIPLEX = "-o ControlMaster=auto -o ControlPersist=60s"


@dataclass
class Bastion:
    state: lab.LabState
    home: str  # the lab user's home, as the bastion sees it
    host_home: Path  # the same directory, as the machine sees it

    def sh(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a shell script on the bastion as the lab user, in its home."""
        env = f"HOME={self.home} PATH=/usr/local/bin:/usr/bin:/bin"
        argv = ["runuser", "-u", self.state.user, "--", "sh", "-c",
                f"cd {self.home} && env {env} sh -c {shlex.quote(script)}"]
        return lab.host_exec(self.state, "bastion", argv, timeout=timeout)

    def put(self, src: Path, rel: str) -> None:
        """Copy a file or directory into the lab user's home (what an upload does)."""
        dest = self.host_home / rel
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "artifacts"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
        subprocess.run(["chown", "-R", f"{self.state.user}:", str(self.host_home / WORK)],
                       check=True)

    def playbook(self, playbook: str, *args: str, inventory: str = "lab",
                 known_hosts: str = ".ssh/standin_known_hosts",
                 multiplex: bool = True) -> subprocess.CompletedProcess[str]:
        ssh_args = SSH_ARGS.format(known_hosts=f"{self.home}/{known_hosts}") + (
            MULTIPLEX if multiplex else "-o ControlMaster=no -o ControlPath=none")
        return self.sh(
            f"cd {WORK}/kubespray && ANSIBLE_HOST_KEY_CHECKING=True "
            f"ANSIBLE_SSH_ARGS={shlex.quote(ssh_args)} ../venv/bin/ansible-playbook "
            f"-i inventory/{inventory}/hosts.yaml {playbook} -b {shlex.join(args)} 2>&1")


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    rows = re.findall(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, re.MULTILINE)
    return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
            for host, counts in rows}


def write_inventory(bastion: Bastion, name: str, etcd: list[str] | None = None,
                    ips: dict[str, str] | None = None) -> None:
    """The lab in kubespray's inventory format; ``ips`` overrides some hosts' ``ip``."""
    state = bastion.state
    cps = [h.name for h in state.nodes if h.role == "control_plane"]
    workers = [h.name for h in state.nodes if h.role == "worker"]
    ips = {h.name: h.private_address for h in state.nodes} | (ips or {})
    inventory = {"all": {
        "hosts": {h.name: {"ansible_host": h.private_address, "ip": ips[h.name],
                           "access_ip": h.private_address} for h in state.nodes},
        "children": {
            "kube_control_plane": {"hosts": dict.fromkeys(cps)},
            "etcd": {"hosts": dict.fromkeys(cps if etcd is None else etcd)},
            "kube_node": {"hosts": dict.fromkeys(workers)},
            "k8s_cluster": {"children": {"kube_control_plane": None, "kube_node": None}},
        }}}
    group_vars = {"ansible_user": state.user,
                  "ansible_ssh_private_key_file": f"{bastion.home}/.ssh/standin_id",
                  "kubeconfig_localhost": True, "supplementary_addresses_in_ssl_keys": EXTRA_SANS}
    inv = bastion.host_home / WORK / "kubespray" / "inventory" / name
    (inv / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yaml").write_text(yaml.safe_dump(inventory))
    (inv / "group_vars" / "all" / "lab.yml").write_text(yaml.safe_dump(group_vars))
    subprocess.run(["chown", "-R", f"{state.user}:", str(inv)], check=True)


def bastion_python_facts() -> BastionFacts:
    """What decides the bastion's wheels: the lab bastion runs this machine's python3."""
    probe = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True, text=True, check=True)
    return BastionFacts(home="/", user="", python=probe.stdout.strip(),
                        machine=platform.machine(), libc=" ".join(platform.libc_ver()), git=False)


@contextmanager
def standin_bastion(lab_env: lab.LabState) -> Iterator[Bastion]:
    """The stand-in installed on the bastion, as kubebastion's kubespray step would do it
    (a venv of the real requirements), with inventory/lab; reset and removed at the end."""
    wheelhouse = wheelhouse_for(WHEELHOUSE, (STAND_IN / "requirements.txt").read_bytes(),
                                bastion_python_facts())
    home = pwd.getpwnam(lab_env.user).pw_dir
    b = Bastion(lab_env, home, lab_env.bastion.host_dir / home.lstrip("/"))
    b.put(STAND_IN, f"{WORK}/kubespray")
    b.put(wheelhouse, f"{WORK}/wheelhouse")
    for src, rel in ((lab_env.private_key, "standin_id"),
                     (lab_env.known_hosts, "standin_known_hosts")):
        shutil.copy(src, b.host_home / ".ssh" / rel)
        subprocess.run(["chown", f"{lab_env.user}:", str(b.host_home / ".ssh" / rel)], check=True)
    (b.host_home / ".ssh" / "standin_id").chmod(0o600)
    write_inventory(b, "lab")
    started = time.monotonic()
    venv = b.sh(f"cd {WORK} && /usr/bin/python3 -m venv venv && venv/bin/pip install -q "
                "--no-index --find-links wheelhouse -r kubespray/requirements.txt 2>&1")
    assert venv.returncode == 0, venv.stdout + venv.stderr
    size = b.sh(f"du -sm {WORK}/venv", timeout=60).stdout.split()[0]
    print(f"venv from the real requirements: {time.monotonic() - started:.1f} s, {size} MB")
    try:
        yield b
    finally:
        b.playbook("reset.yml", "-e", "skip_confirmation=true")
        b.sh("for s in .ansible/cp/*; do [ -S \"$s\" ] && timeout 10 ssh -o ControlPath=\"$s\" "
             "-O exit x; "
             f"done; rm -rf {WORK} .ssh/standin_id .ssh/standin_known_hosts",
             timeout=300)  # the real venv: ~580 MB, tens of thousands of files
