"""What the last successful playbook run was made from, so "skip" means "nothing to do".

A healthy cluster alone does not prove that ``cluster.yml`` finished: nodes turn Ready in
the middle of it (DNS and the other apps come later), and a healthy cluster says nothing
about a changed ``kubespray_vars``, a new kubespray or the SAN that fetch-kubeconfig asked
for. So after a run that ended with a full recap (every host, failed=0, unreachable=0) we
record, on the bastion, the digests of everything the run was made from; the record is
removed when a playbook starts. The playbook is skipped only when the record equals the
desired state *and* the cluster is healthy; otherwise ``reasons_to_run`` says why it runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from kubebastion.kubespray.inventory import HOSTS_FILE
from kubebastion.kubespray.playbook import PlaybookOutcome
from kubebastion.ssh.remote import quote

#: The parts of the desired state, in the order reasons are given, and how to say each.
PARTS = {
    "source": "the kubespray source changed",
    "requirements": "kubespray's requirements.txt changed",
    "inventory": "the rendered inventory (hosts.yaml) changed",
    "kubespray_vars": "kubespray_vars changed",
    "api": "api_port or api_address changed",
    "rendered": "the rendered inventory changed",
    "checkout": "the checkout folder changed",
    "extra_vars": "the extra vars (-e, the extra_vars setting) changed",
}
#: Said only when none of these explains it (a new kubebastion rendering differently).
_CATCH_ALL = {"rendered": ("inventory", "kubespray_vars", "api")}
NO_RECORD = ("no successful playbook run is recorded (first run, or the last one failed, "
             "timed out or was interrupted)")


def record_path(remote_log_dir: str, cluster_name: str) -> str:
    """Beside the run's lock and logs, outside the checkout (which a new source replaces)."""
    return str(PurePosixPath(remote_log_dir) / f"kubespray-applied-{cluster_name}.json")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rendered_digest(inventory: Mapping[str, str]) -> str:
    return _sha256("".join(f"{name}\n{inventory[name]}" for name in sorted(inventory)))


def desired_state(*, source_identity: str, requirements_sha256: str,
                  inventory: Mapping[str, str], kubespray_vars: Mapping[str, Any],
                  api: str, checkout: str, extra_vars: Sequence[str] = (),
                  groups: str = "") -> dict[str, str]:
    """The digest of each part a playbook run is made from: the inventory files as they
    are written on the bastion, and (to name the reason) the settings they come from.
    ``groups``: kubespray's groups in order (``day2.nodes.Groups``), kept in the record so
    day two knows which nodes the cluster has; never a reason by itself."""
    return {
        **({"groups": groups} if groups else {}),
        "source": source_identity,
        "requirements": requirements_sha256,
        "inventory": _sha256(inventory[HOSTS_FILE]),
        "kubespray_vars": _sha256(json.dumps(kubespray_vars, sort_keys=True, default=str)),
        "api": api,
        "rendered": _rendered_digest(inventory),
        "checkout": checkout,
        "extra_vars": _sha256(json.dumps(list(extra_vars))),
    }


def with_inventory(desired: Mapping[str, str], inventory: Mapping[str, str],
                   groups: str) -> dict[str, str]:
    """``desired`` with another inventory (the cluster with nodes added or removed), all
    else equal: the state a day-two run compares with, or records."""
    state = dict(desired)
    state.update(inventory=_sha256(inventory[HOSTS_FILE]), groups=groups,
                 rendered=_rendered_digest(inventory))
    return state


def record_text(state: Mapping[str, str]) -> str:
    return json.dumps(dict(state), sort_keys=True, indent=1) + "\n"


def parse_record(data: bytes | None) -> dict[str, str] | None:
    """The recorded state; None when absent or unreadable (then the playbook runs)."""
    if data is None:
        return None
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {str(k): str(v) for k, v in parsed.items()}


def reasons_to_run(recorded: Mapping[str, str] | None, desired: Mapping[str, str]
                   ) -> list[str]:
    """Why the playbook must run again; empty when the last successful run was made from
    exactly ``desired`` (an empty digest in ``desired``, unknown in a dry run, differs)."""
    if recorded is None:
        return [NO_RECORD]
    changed = [part for part in PARTS
               if not desired.get(part) or recorded.get(part) != desired[part]]
    changed = [part for part in changed
               if not set(_CATCH_ALL.get(part, ())) & set(changed)]
    return [f"{PARTS[part]} since the last successful run" for part in changed]


def complete_success(outcome: PlaybookOutcome, hosts: Collection[str]) -> bool:
    """Exit 0 and a recap line for every inventory host with failed=0 and unreachable=0: a
    playbook stopped early (or whose output was cut) never counts as done."""
    recap = outcome.parsed.recap
    return (outcome.succeeded and set(hosts) <= set(recap)
            and all(r.succeeded for r in recap.values()))


def clear_command(path: str) -> str:
    return f"rm -f {quote(path)}"
