"""Step 3: kubespray's admin.conf becomes the login user's ``~/.kube/config``.

By hand: ``sudo cp /etc/kubernetes/admin.conf ~/; sudo chown ubuntu:ubuntu ~/admin.conf;
mkdir -p .kube; mv ~/admin.conf ~/.kube/config``. Here the user is the inventory's login
user (not a hard-coded ``ubuntu``), the file is compared by checksum first (one command:
nothing else happens when all is in place), a different existing config is backed up, and
the copy lands by rename so it is never half-written (``ssh.remote.write_files``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from nornir.core.task import Result, Task

from kubebastion.errors import StepError
from kubebastion.kubeconfig.admin import ADMIN_CONF
from kubebastion.report import HostOutcome, outcomes
from kubebastion.runlock import cluster_lock
from kubebastion.runtime import Run
from kubebastion.ssh.remote import FileWrite, parse_key_values, quote, read_file, run, write_files
from kubebastion.ssh.shell import shell_for


@dataclass(frozen=True)
class AdminConfOutcome:
    state: str  # unchanged | changed | would-change
    path: str
    backup: str
    kubectl: str

    @property
    def summary(self) -> str:
        kept = f" (the previous one kept as {self.backup})" if self.backup else ""
        return f"{self.path}: {self.state}{kept}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def target_state_script(user: str) -> str:
    """Runs as root: admin.conf's checksum and the state of ``user``'s ``~/.kube/config``
    and its folder, as ``key=value`` lines (``state=missing``, exit 4: no admin.conf)."""
    u = quote(user)
    return "\n".join([
        "set -e",
        f"src={ADMIN_CONF}",
        'if [ ! -f "$src" ]; then echo "state=missing"; exit 4; fi',
        f"home=$(getent passwd {u} | cut -d: -f6)",
        f"group=$(id -gn {u})",
        'dir="$home/.kube"; dst="$dir/config"',
        'echo "path=$dst"; echo "group=$group"',
        "echo \"want=$(sha256sum \"$src\" | cut -d' ' -f1)\"",
        "have=none; fstate=none; dstate=none",
        "if [ -f \"$dst\" ]; then have=$(sha256sum \"$dst\" | cut -d' ' -f1); "
        "fstate=$(stat -c '%a %U %G' \"$dst\"); fi",
        "if [ -d \"$dir\" ]; then dstate=$(stat -c '%a %U %G' \"$dir\"); fi",
        'echo "have=$have"; echo "fstate=$fstate"; echo "dstate=$dstate"',
    ])


@dataclass(frozen=True)
class TargetState:
    """What :func:`target_state_script` printed."""

    path: str
    group: str
    want: str  # admin.conf's sha256
    have: str  # the config's, "none" when absent
    file_state: str  # "600 user group", "none"
    folder_state: str

    @classmethod
    def parse(cls, values: dict[str, str]) -> TargetState:
        return cls(values["path"], values["group"], values["want"], values["have"],
                   values["fstate"], values["dstate"])

    def up_to_date(self, user: str) -> bool:
        owned = f"{user} {self.group}"
        return (self.have == self.want and self.file_state == f"600 {owned}"
                and self.folder_state == f"700 {owned}")

    def write(self, user: str, data: bytes) -> FileWrite:
        """admin.conf's bytes as the user's 0600 config in a 0700 ``~/.kube``, a
        different config kept as a backup."""
        other = self.have not in ("none", hashlib.sha256(data).hexdigest())
        return FileWrite(self.path, data, 0o600, user, self.group, backup=other,
                         folder_mode=0o700)


KUBECTL_CHECK = ("if command -v kubectl >/dev/null 2>&1; then "
                 "kubectl get node --request-timeout=15s; else echo 'kubectl not installed'; fi")


def install_admin_conf(task: Task) -> Result:
    """On a control plane: admin.conf to ``~/.kube/config`` (0600, the user's), then
    ``kubectl get node`` as that user."""
    shell = shell_for(task)
    user = task.host.username
    if not user:
        raise StepError(f"{task.host.name}: no login user in the inventory")
    result = run(shell, target_state_script(user), sudo=True, check=False,
                 display=f"inspect {ADMIN_CONF} for {user}")
    values = parse_key_values(result.stdout)
    if values.get("state") == "missing":
        raise StepError(f"{task.host.name}: {ADMIN_CONF} does not exist: run the kubespray "
                        "step first (`invoke kubespray`)")
    if not result.ok or "dstate" not in values:
        raise StepError(f"{task.host.name}: installing {ADMIN_CONF} failed: "
                        f"{result.stderr.strip() or result.stdout.strip()}")
    target = TargetState.parse(values)
    state, backup = "unchanged", ""
    if not target.up_to_date(user):
        state = "would-change" if task.is_dry_run() else "changed"
    if state == "changed":
        data = read_file(shell, ADMIN_CONF, sudo=True)
        if data is None:
            raise StepError(f"{task.host.name}: {ADMIN_CONF} disappeared while installing it")
        backups = write_files(shell, [target.write(user, data)], sudo=True,
                              display=f"install {ADMIN_CONF} for {user}")
        backup = backups[0] if backups else ""
    kubectl = ""
    if not task.is_dry_run():
        check = run(shell, KUBECTL_CHECK, check=False, timeout=30)
        if not check.ok:
            raise StepError(f"{task.host.name}: `kubectl get node` as {user} failed: "
                            f"{check.stderr.strip()}")
        kubectl = check.stdout.strip()
    outcome = AdminConfOutcome(state, target.path, backup, kubectl)
    changed = outcome.state in ("changed", "would-change")
    diff = f"{ADMIN_CONF} -> {outcome.path}" if changed else ""
    return Result(host=task.host, result=outcome, changed=changed, diff=diff)


def run_admin_conf(run: Run) -> list[HostOutcome]:
    """install_admin_conf on every control plane."""
    names = {n.name for n in run.cluster.control_planes}
    selected = run.nornir.filter(filter_func=lambda host: host.name in names)
    with cluster_lock(run, "admin-conf"):
        return outcomes(selected.run(task=install_admin_conf, name="admin-conf"))
