"""Hostile values in the inventory and on the command line: names, addresses, users,
paths, cluster and context names holding ``;``, ``$()``, backquotes, quotes, newlines,
spaces, pipes. Each is rejected by validation (exit 2, a message naming it) or stays
inert. The proof: every payload would ``touch`` a canary file, and no host (nor this
machine) may have it at the end.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import lab
from kubebastion.errors import ConfigError, InventoryError
from kubebastion.runtime import build_run
from tests.reliability.conftest import Figures
from tests.reliability.helpers import (
    Inventory,
    as_root,
    fresh,
    host_argv,
    invoke,
    write_config,
)

#: The section title in docs/reliability.md.
TITLE = "Hostile inventory values and options"
pytestmark = pytest.mark.lab

CANARY = f"/tmp/kbr-canary-{secrets.token_hex(4)}"
TOUCH = f"touch {CANARY}"
PAYLOADS = [
    f"x;{TOUCH}",
    f"x$({TOUCH})",
    f"x`{TOUCH}`",
    f"x';{TOUCH};'",
    f'x";{TOUCH};"',
    f"x\n{TOUCH}",
    f"x {TOUCH}",
    f"x|{TOUCH}",
    f"x&&{TOUCH}",
]
VICTIM = "k8s-w1"

Edit = Callable[[Inventory, Any], None]


def _node(key: str) -> Edit:
    def edit(inventory: Inventory, value: Any) -> None:
        inventory.hosts[VICTIM].setdefault("data", {})[key] = value
    return edit


def _bastion(key: str) -> Edit:
    def edit(inventory: Inventory, value: Any) -> None:
        inventory.hosts["bastion"].setdefault("data", {})[key] = value
    return edit


def _cluster(key: str, wrap: Callable[[Any], Any] = lambda v: v) -> Edit:
    def edit(inventory: Inventory, value: Any) -> None:
        inventory.data[key] = wrap(value)
    return edit


def _rename(inventory: Inventory, value: Any) -> None:
    inventory.hosts[value] = inventory.hosts.pop(VICTIM)


def _host(key: str) -> Edit:
    def edit(inventory: Inventory, value: Any) -> None:
        inventory.hosts[VICTIM][key] = value
    return edit


def _default_user(inventory: Inventory, value: Any) -> None:
    inventory.defaults["username"] = value


def _group(inventory: Inventory, value: Any) -> None:
    inventory.hosts[VICTIM]["groups"] = ["workers", value]


#: Fields whose format the inventory documents: a hostile value must be rejected.
VALIDATED: dict[str, Edit] = {
    "host name": _rename,
    "hostname (address)": _host("hostname"),
    "username (defaults)": _default_user,
    "username (one host)": _host("username"),
    "port": _host("port"),
    "groups": _group,
    "cluster_name": _cluster("cluster_name"),
    "data.ip": _node("ip"),
    "data.access_ip": _node("access_ip"),
    "data.jump_host": _node("jump_host"),
    "bastion data.private_address": _bastion("private_address"),
    "bastion data.uplink": _bastion("uplink"),
    "private_cidr": _cluster("private_cidr"),
    "api_address": _cluster("api_address"),
    "egress_targets": _cluster("egress_targets", lambda v: [f"{v}:443"]),
}
#: A legal value plus a trailing newline: a ``$`` regex anchor lets it through.
TRAILING_NEWLINE: dict[str, tuple[Edit, str]] = {
    "host name": (_rename, f"{VICTIM}\n"),
    "hostname (address)": (_host("hostname"), "198.18.1.101\n"),
    "username (one host)": (_host("username"), "kbrlab\n"),
    "cluster_name": (_cluster("cluster_name"), "lab\n"),
    "bastion data.uplink": (_bastion("uplink"), "wan0\n"),
}


def swap(edit: Edit) -> Callable[[Any, Inventory], None]:
    """``edit`` with its arguments swapped, so ``partial`` can bind the value."""
    return lambda value, inventory: edit(inventory, value)


@dataclass
class Verdict:
    field: str
    value: str
    outcome: str  # rejected, accepted, crashed
    message: str


def verdict(state: lab.LabState, folder: Path, field: str, edit: Edit, value: Any) -> Verdict:
    config = write_config(state, folder, edit=lambda inventory: edit(inventory, value))
    try:
        run = build_run(config)
    except (InventoryError, ConfigError) as exc:
        named = repr(value)[1:-1] in str(exc) or str(value) in str(exc)
        return Verdict(field, value, "rejected" if named else "rejected (unnamed)", str(exc))
    except Exception as exc:  # the inventory crashed validation: a bug, not a verdict
        return Verdict(field, value, "crashed", f"{type(exc).__name__}: {exc}")
    run.close()
    return Verdict(field, value, "accepted", "")


def canaries(state: lab.LabState) -> list[str]:
    found = []
    for host in fresh(state).hosts:
        listing = as_root(state, host.name, "ls -d /tmp/kbr-canary-* 2>/dev/null || true")
        found += [f"{host.name}:{line}" for line in listing.stdout.split()]
    found += [f"local:{p}" for p in Path("/tmp").glob("kbr-canary-*")]
    return found


@pytest.fixture(scope="module")
def clean(rlab: lab.LabState) -> Iterator[lab.LabState]:
    assert not canaries(rlab)
    yield fresh(rlab)
    for host in fresh(rlab).hosts:
        as_root(rlab, host.name, "rm -f /tmp/kbr-canary-*")
    for path in Path("/tmp").glob("kbr-canary-*"):
        path.unlink()


def test_hostile_values_in_validated_fields_are_rejected_naming_them(
        clean: lab.LabState, tmp_path: Path, figures: Figures) -> None:
    problems = []
    for field, edit in VALIDATED.items():
        verdicts = [verdict(clean, tmp_path / f"{field}-{n}", field, edit, payload)
                    for n, payload in enumerate(PAYLOADS)]
        bad = [v for v in verdicts if v.outcome != "rejected"]
        problems += [f"{v.field} {v.value!r}: {v.outcome} {v.message[:200]}" for v in bad]
        figures.count(f"hostile {field}: `;` `$()` backquote quotes newline space `|` `&&`",
                      len(verdicts) - len(bad), len(verdicts), "rejected",
                      f"all {len(verdicts)} rejected by validation (exit 2), naming the value",
                      detail="; ".join(f"{v.value!r}: {v.outcome} {v.message[-120:]}"
                                       for v in bad[:3]))
    for field, (edit, value) in TRAILING_NEWLINE.items():
        v = verdict(clean, tmp_path / f"newline-{field}", field, edit, value)
        figures.record(f"{field} with a trailing newline ({value!r})", "rejected (exit 2)",
                       v.outcome, v.outcome == "rejected", detail=v.message[-200:])
        if v.outcome != "rejected":
            problems.append(f"{field} {value!r}: {v.outcome} {v.message[:200]}")
    cli = [invoke("check", "--config", write_config(clean, tmp_path / f"cli-{n}",
                                                    edit=partial(swap(edit), payload)))
           for n, (edit, payload) in enumerate([(_rename, PAYLOADS[0]),
                                                (_cluster("cluster_name"), PAYLOADS[1]),
                                                (_default_user, PAYLOADS[3])])]
    codes = [r.code for r in cli]
    figures.record("hostile host name / cluster_name / username through `invoke check`",
                   "exit 2 with the list of problems", f"exit codes {codes}",
                   codes == [2, 2, 2], detail=cli[0].stderr.strip()[:300])
    assert codes == [2, 2, 2], [r.stderr[-500:] for r in cli]
    assert not problems, "\n".join(problems)


def test_hostile_values_in_free_form_fields_stay_inert(
        clean: lab.LabState, deployed: Path, tmp_path: Path, figures: Figures) -> None:
    """Paths, kubespray variables, context names: legal as they are, so they must be
    quoted wherever they reach a shell. Each run must not make the canary."""
    state = clean
    outcomes: dict[str, int] = {}
    # local paths: known_hosts and the private key
    for key, payload in (("known_hosts", PAYLOADS[1]), ("private_key", PAYLOADS[0])):
        config = write_config(state, tmp_path / f"path-{key}", extras={key: f"/tmp/{payload}"})
        outcomes[f"extras.{key} {payload!r}"] = invoke("check", "--config", config).code
    # kubespray: a checkout folder and variables with payloads, a real playbook run
    hostile_vars = {f"kbr_hostile_{n}": payload for n, payload in enumerate(PAYLOADS)}
    config = write_config(state, tmp_path / "kubespray", kubespray=True,
                          kubespray_settings={"checkout_dir": f"~/ks-{PAYLOADS[1]}"},
                          kubespray_vars=hostile_vars)
    outcomes["kubespray checkout_dir + kubespray_vars"] = invoke(
        "kubespray", "--config", config, "--force", "--json").code
    # context names on the bastion (kubeconfig and a kubectl command line)
    for n, payload in enumerate([PAYLOADS[0], PAYLOADS[1], PAYLOADS[3]]):
        outcomes[f"fetch-kubeconfig --context {payload!r}"] = invoke(
            "fetch-kubeconfig", "--config", deployed, "--context", f"ctx{n}-{payload}",
            "--no-switch").code
    # command-line lists
    outcomes[f"deploy --limit {PAYLOADS[0]!r}"] = invoke(
        "deploy", "--config", deployed, "--limit", f"k8s-w0,{PAYLOADS[0]}").code
    outcomes[f"deploy --steps {PAYLOADS[1]!r}"] = invoke(
        "deploy", "--config", deployed, "--steps", PAYLOADS[1]).code
    outcomes[f"kubespray --version {PAYLOADS[0]!r}"] = invoke(
        "kubespray", "--config", deployed, "--version", f"v2.31.0{PAYLOADS[0]}").code
    found = canaries(state)
    figures.count(f"hostile paths, kubespray settings and variables, context names, --limit, "
                  f"--steps, --version ({len(outcomes)} runs)", len(found), 0,
                  "canary files", "inert: no canary file on any host or locally",
                  detail=f"exit codes: {outcomes}")
    assert not found, found
    assert outcomes["kubespray checkout_dir + kubespray_vars"] == 0
    assert all(code == 2 for name, code in outcomes.items()
               if name.startswith(("deploy --", "kubespray --version"))), outcomes


def test_a_hostile_log_folder_stays_inert_when_another_run_holds_the_lock(
        clean: lab.LabState, deployed: Path, tmp_path: Path, figures: Figures) -> None:
    """``remote_log_dir`` is a legal path; the playbook script names its lock file in the
    message it prints when another run holds that lock."""
    state = clean
    folder = f"~/logs-{PAYLOADS[3]}"
    config = write_config(state, tmp_path, kubespray=True,
                          kubespray_settings={"remote_log_dir": folder})
    home = f"/home/{state.user}"
    real = folder.replace("~", home, 1)
    made = subprocess.run(host_argv(state, "bastion", ["runuser", "-u", state.user, "--",
                                                       "mkdir", "-p", "--", real]),
                          capture_output=True, text=True, timeout=30, check=False)
    assert made.returncode == 0, made.stderr
    holder = subprocess.Popen(host_argv(state, "bastion", [
        "runuser", "-u", state.user, "--", "flock", f"{real}/kubespray.lock", "sleep", "300"]),
        start_new_session=True)
    try:
        run = invoke("kubespray", "--config", config, "--force", "--json")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    found = canaries(state)
    figures.count("hostile kubespray remote_log_dir while another run holds its lock",
                  len(found), 0, "canary files", "inert: the run refuses (lock held), no canary",
                  detail=f"exit {run.code}; canaries: {found}")
    assert run.code == 1, run.output[-2000:]
    assert not found, found
