"""`invoke deploy` on the lab, for real: dry run changes nothing, a fresh lab goes to every
node Ready, a rerun changes nothing and is quick, a broken uplink stops at the egress gate,
and the flow also runs on the bastion itself (``data.local: true``).

The module starts from a freshly rebuilt lab (same names and paths) so "fresh" means it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import lab
from tests.lab.helpers import INVOKE, REPO, write_config

# It rebuilds the shared session lab first: run after the modules that keep state in it.
pytestmark = [pytest.mark.lab, pytest.mark.lab_destructive]
SCHEMA = json.loads((REPO / "docs" / "deploy-report.schema.json").read_text())
#: What a step may touch on a host: checksummed before and after a dry run.
WATCHED = "/etc/kubernetes /etc/kubebastion /etc/sysctl.d /etc/systemd/system /home /root"


def deploy(config: Path, *args: str, timeout: float = 900) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([INVOKE, "deploy", "--config", str(config), "--json", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)
    try:
        document = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    jsonschema.validate(document, SCHEMA)
    return proc.returncode, document, proc.stderr


def host_fingerprint(state: lab.LabState, host: str) -> str:
    """Checksums of every file a step may write, plus the firewall and forwarding state."""
    script = (f"find {WATCHED} -type f -not -name '*.log' -not -path '*/.cache/*' "
              "-not -path '*/.ansible/*' -exec sha256sum {} + 2>/dev/null | sort; "
              "nft list ruleset; cat /proc/sys/net/ipv4/ip_forward")
    return lab.host_exec(state, host, ["sh", "-c", script], timeout=60).stdout


def operator_logins(state: lab.LabState) -> dict[str, int]:
    """Accepted logins made with the operator's key (not ansible's key from the bastion)."""
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(state.private_key)],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    fresh = lab.load_state(state.state_dir)
    return {h.name: sum(1 for line in Path(h.sshd_log).read_text().splitlines()
                        if "Accepted publickey" in line and fingerprint in line)
            for h in [fresh.bastion, *fresh.nodes]}


@pytest.fixture(scope="module")
def fresh(lab_env: lab.LabState, lab_params: dict[str, Any]) -> Iterator[lab.LabState]:
    lab.down(lab_params["name_prefix"], lab_params["user"], lab_params["state_dir"])
    yield lab.up(**lab_params)


@pytest.fixture(scope="module")
def config(fresh: lab.LabState, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(fresh, tmp_path_factory.mktemp("deploy-config"))


def test_dry_run_on_a_fresh_lab_changes_nothing(fresh: lab.LabState, config: Path) -> None:
    hosts = [fresh.bastion.name, *(n.name for n in fresh.nodes)]
    before = {h: host_fingerprint(fresh, h) for h in hosts}
    code, report, _ = deploy(config, "--dry-run")
    assert code == 0, json.dumps(report, indent=1)[-3000:]
    assert report["dry_run"] is True
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["nat"]["status"] == "changed"  # it says what it would do ...
    assert steps["kubespray"]["status"] == "changed"
    # every row the real run changes is listed, the nodes' authorized_keys included
    authorized = {r["host"]: r for r in steps["kubespray"]["hosts"]
                  if r.get("data", {}).get("part") == "authorized_keys"}
    assert set(authorized) == {n.name for n in fresh.nodes}, steps["kubespray"]["hosts"]
    assert all(r["status"] == "changed" and "would authorize" in r["detail"]
               for r in authorized.values()), authorized
    assert {h: host_fingerprint(fresh, h) for h in hosts} == before  # ... and does nothing


def test_deploy_a_fresh_lab_then_rerun_changes_nothing(fresh: lab.LabState,
                                                       config: Path) -> None:
    logins_before = operator_logins(fresh)
    started = time.monotonic()
    code, first, stderr = deploy(config)
    first_seconds = time.monotonic() - started
    assert code == 0, json.dumps(first, indent=1)[-4000:]
    assert first["ok"] and first["context"] == "lab"
    assert [s["name"] for s in first["steps"]] == [
        "preflight", "nat", "egress", "kubespray", "admin-conf", "fetch-kubeconfig"]
    logins_after = operator_logins(fresh)
    assert {h: logins_after[h] - logins_before[h] for h in logins_after} == dict.fromkeys(
        logins_after, 1), "one login per host per deploy"
    assert "==> kubespray" in stderr and "TASK " in stderr  # live progress
    fetched = next(s for s in first["steps"] if s["name"] == "fetch-kubeconfig")
    health = fetched["extra"]["health"]
    assert health["healthy"] and set(health["ready"]) == {n.name for n in fresh.nodes}
    kubectl = lab.host_exec(fresh, "bastion", ["su", "-", fresh.user, "-c",
                                                "kubectl get nodes"], timeout=60)
    assert kubectl.returncode == 0 and all(n.name in kubectl.stdout for n in fresh.nodes)

    started = time.monotonic()
    code, second, _ = deploy(config)
    second_seconds = time.monotonic() - started
    assert code == 0
    assert [s["status"] for s in second["steps"]] == ["ok"] * 6, second["steps"]
    assert second["changed"] is False
    print(f"deploy: first {first_seconds:.1f} s, second {second_seconds:.1f} s")
    assert second_seconds < 0.25 * first_seconds


def test_json_report_is_schema_valid_for_a_subset(config: Path) -> None:
    code, report, _ = deploy(config, "--steps", "preflight,egress", "--limit", "k8s-w0")
    assert code == 0
    assert [s["name"] for s in report["steps"]] == ["preflight", "egress"]
    preflight = report["steps"][0]
    assert {h["host"] for h in preflight["hosts"]} == {"bastion", "k8s-w0"}


def test_bad_usage_exits_2(config: Path) -> None:
    proc = subprocess.run([INVOKE, "deploy", "--config", str(config), "--steps", "kubspray"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "unknown step" in proc.stdout + proc.stderr


def test_broken_uplink_stops_at_the_egress_gate(fresh: lab.LabState, config: Path) -> None:
    inet_ns = f"{fresh.prefix}-inet"
    links = lab.exec_in(inet_ns, ["ip", "-o", "link", "show"]).stdout
    uplink = next(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()
                  if "LOOPBACK" not in line and "dummy" not in line.split(":")[1])
    lab.exec_in(inet_ns, ["ip", "link", "set", uplink, "down"], check=True)
    try:
        code, report, _ = deploy(config)
        assert code == 1
        assert report["failed_step"] == "egress"
        steps = {s["name"]: s for s in report["steps"]}
        assert steps["kubespray"]["status"] == "skipped"
        assert "unreachable" in steps["egress"]["detail"]
    finally:
        lab.exec_in(inet_ns, ["ip", "link", "set", uplink, "up"], check=True)


def test_deploy_on_the_bastion_itself(fresh: lab.LabState, config: Path) -> None:
    # Inside the bastion, /tmp and /root are its own: the config and the wheelhouse go
    # under the lab's state folder, which the hosts share with the operator.
    local = Path(fresh.state_dir) / "local-deploy"
    shutil.rmtree(local, ignore_errors=True)
    (local / "inventory").mkdir(parents=True)
    hosts = yaml.safe_load((config.parent / "inventory" / "hosts.yaml").read_text())
    hosts["bastion"].setdefault("data", {})["local"] = True
    (local / "inventory" / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    (local / "inventory" / "groups.yaml").write_text(
        (config.parent / "inventory" / "groups.yaml").read_text())
    defaults = yaml.safe_load((config.parent / "inventory" / "defaults.yaml").read_text())
    wheelhouse = Path(defaults["data"]["kubespray"]["wheelhouse"]).expanduser()
    shutil.copytree(wheelhouse, local / "wheelhouse")
    defaults["data"]["kubespray"]["wheelhouse"] = str(local / "wheelhouse")
    (local / "inventory" / "defaults.yaml").write_text(yaml.safe_dump(defaults))
    (local / "nornir_config.yaml").write_text(config.read_text())
    bastion = lab.load_state(fresh.state_dir).bastion
    before = operator_logins(fresh)
    # invoke as root inside the bastion's own namespaces, as an operator logged in there;
    # a checkout where the bastion has its own /tmp, /root or /home is bound in first.
    share = ""
    if any(REPO.is_relative_to(p) for p in lab.HIDDEN_IN_HOSTS):
        share = f"mkdir -p {REPO} && mount --bind /proc/1/root{REPO} {REPO} && "
    proc = subprocess.run(
        ["nsenter", "-t", str(bastion.sshd_pid), "-n", "-m", "-u", "--", "sh", "-c",
         f"{share}cd {REPO} && HOME=/root {INVOKE} deploy --json --config "
         f"{local / 'nornir_config.yaml'}"],
        capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["ok"] and report["kubeconfig"] == "/root/.kube/config"
    # No SSH to the bastion itself (not even as a jump host); one login per node.
    after = operator_logins(fresh)
    assert after[bastion.name] == before[bastion.name]
    assert all(after[n.name] - before[n.name] == 1 for n in fresh.nodes)
