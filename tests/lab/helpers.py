"""Helpers of the lab tests (tests/lab/): running ``invoke`` as an operator does, a copy of
the lab's inventory with kubespray settings, and commands inside lab hosts. One place, so
that a test module never imports another test module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import lab
from kubebastion import secrets as kb_secrets
from kubebastion.kubespray.settings import default_wheelhouse

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
